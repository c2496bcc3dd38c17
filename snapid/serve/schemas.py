"""Response models: the OpenAPI schema documents every answer, errors included."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable code, e.g. corrupt_image, overloaded.")
    message: str = Field(description="What was wrong, naming the file or value at fault.")


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str = Field(description="Digest of the bundle's manifest, which pins every file in it.")


class Prediction(BaseModel):
    index: int = Field(description="Position of the class in the model's output.")
    id: str = Field(description="The class label id.")
    name: str
    display_name: str = Field(description="Name in the requested language when the bundle has it, else name.")
    score: float = Field(ge=0, le=1, description="Calibrated probability.")


class Timings(BaseModel):
    decode: float = Field(description="Decoding and preprocessing the photos, ms.")
    inference: float = Field(description="Waiting for a batch and running the model, ms.")
    total: float = Field(description="The whole request inside the server, ms.")


class PredictResponse(BaseModel):
    prediction_id: str = Field(description="Server-made UUID; refer to it when sending feedback.")
    predictions: list[Prediction] = Field(description="Best first.")
    unknown: bool = Field(description="True when the best score is under the bundle's threshold.")
    threshold: float
    photos: int = Field(description="How many photos were combined (their probabilities averaged).")
    model: ModelRef
    timings_ms: Timings


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    created_at: str | None = None
    classes: int
    input_size: int
    resize: str
    temperature: float
    threshold: float
    max_files: int
    metrics: dict = Field(default_factory=dict, description="Headline figures from the bundle manifest.")


class ClassInfo(BaseModel):
    index: int
    id: str
    name: str
    display_names: dict[str, str]


class ClassList(BaseModel):
    model: ModelRef
    classes: list[ClassInfo]


class Health(BaseModel):
    status: str
    model: ModelRef | None = None
    detail: str | None = None


class ReloadResponse(BaseModel):
    reloaded: bool
    model: ModelRef
