"""Response models: the OpenAPI schema documents every answer, errors included."""

from __future__ import annotations

from typing import Literal

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
    decode: float = Field(description="Decoding and preprocessing the photos, ms (mode=detect: with detecting and "
                          "cropping the objects).")
    inference: float = Field(description="Waiting for a batch and running the model, ms.")
    total: float = Field(description="The whole request inside the server, ms.")


class CardLink(BaseModel):
    label: str
    url: str = Field(description="An http(s) URL (checked at import).")


class CardField(BaseModel):
    name: str
    value: str


class WikipediaSummary(BaseModel):
    lang: str = Field(description="Language of this summary; differs from the asked one when fallback is true.")
    title: str
    extract: str
    description: str
    url: str
    thumbnail: str
    fallback: bool


class Taxon(BaseModel):
    rank: str = Field(description="species, genus, family or order.")
    name: str = Field(description="The scientific name at that rank, e.g. Asteraceae.")
    label: str = Field(description="Its common name in the requested language when Wikidata has one, else empty.")


class KnowledgeCard(BaseModel):
    class_id: str
    display_name: str = Field(description="Name in the requested language, else the best available.")
    names: dict[str, str] = Field(description="Display names by language (und: no language given).")
    name_sources: dict[str, str] = Field(default_factory=dict, description="Languages whose name was not given but "
                                         "taken from a page title (value: wikipedia).")
    scientific_name: str
    description: str = Field(description="In the requested language, else English, else any.")
    descriptions: dict[str, str] = Field(default_factory=dict, description="Every language of the description.")
    image: str = Field(description="URL of a picture as given in the cards file; may be on another site.")
    links: list[CardLink]
    fields: list[CardField] = Field(description="Free fields (ingredient, maker, price...), in file order.")
    wikipedia: WikipediaSummary | None = None
    taxonomy: list[Taxon] = Field(default_factory=list, description="From the taxon up to its order (Wikidata), "
                                  "when the card has a scientific name and `snapid knowledge enrich` found it.")


class RuleWarning(BaseModel):
    classes: list[str] = Field(description="The class ids the rule names, all among the objects' best guesses.")
    names: list[str] = Field(description="Their display names in the requested language.")
    severity: str = Field(description="contraindicated, danger, warning, caution, info or another word.")
    message: str = Field(description="In the requested language, else English, else any.")
    messages: dict[str, str] = Field(description="Every language of the message.")
    objects: list[int] = Field(description="Which objects the rule concerns: photo numbers from 0 (mode=each), "
                               "positions in objects from 0 (mode=detect).")
    certain: bool = Field(True, description="False when one of these objects is under the model's threshold (its best "
                                            "guess was used): a possible interaction, if the guesses are right.")


class ObjectAnswer(BaseModel):
    photo: int = Field(description="Position of the photo in the request, from 0.")
    prediction_id: str = Field(description="Refer to it when sending feedback about this object.")
    predictions: list[Prediction]
    unknown: bool
    card: KnowledgeCard | None = None
    box: list[float] | None = Field(None, min_length=4, max_length=4, description="mode=detect: the detected box "
                                    "[x1, y1, x2, y2] in pixels of the upright original photo.")
    detector_score: float | None = Field(None, ge=0, le=1, description="mode=detect: the detector's score for the box.")


class PredictResponse(BaseModel):
    prediction_id: str = Field(description="Server-made UUID; refer to it when sending feedback.")
    predictions: list[Prediction] = Field(description="Best first (mode=each: the first photo's).")
    unknown: bool = Field(description="True when the best score is under the bundle's threshold.")
    threshold: float
    photos: int = Field(description="How many photos were sent (mode=same: combined, their probabilities averaged).")
    model: ModelRef
    timings_ms: Timings
    mode: str = Field("same", description="same: one object in every photo; each: one object per photo; detect: the "
                      "bundle has a detector, and every object found in the photos is cropped and identified.")
    card: KnowledgeCard | None = Field(None, description="Knowledge card of the best match; null when unknown or none.")
    warnings: list[RuleWarning] = Field(default_factory=list, description="Rules matched by the recognised objects "
                                        "(mode=each), most severe first.")
    objects: list[ObjectAnswer] | None = Field(None, description="mode=each: one answer per photo; mode=detect: one "
                                               "per detected object, photo by photo, best detector score first "
                                               "(empty on fallback).")
    fallback: str | None = Field(None, description="mode=detect: \"no_object_detected\" when the detector found "
                                 "nothing, so the whole photo was identified instead (predictions, card); else null.")
    kept: Literal["not_asked", "kept", "quota_full"] = Field(
        "not_asked", description="What happened to the photos: not_asked (consent=false: nothing stored), kept "
        "(stored for review and retraining), quota_full (consent=true, but the kept photos have reached "
        "SNAPID_PHOTO_QUOTA_BYTES: not stored; the answer is not affected). mode=each: quota_full when any "
        "photo was not kept.")


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


# --- QR phone hand-off (routes/handoff.py) -----------------------------------------------------------
class SessionCreated(BaseModel):
    session_id: str
    desktop_key: str = Field(description="Shown once: send it as X-Snapid-Key (or key=) to read this session.")
    phone_url: str = Field(description="The phone upload page, with the signed token; the QR code encodes it.")
    qr_svg: str = Field(description="The QR code of phone_url as an SVG document (made on the server).")
    expires_at: str
    expires_in_s: float
    max_uploads: int
    single_use: bool = Field(description="True: the phone link takes one photo, then answers 409.")
    note: str = Field("", description="A hint when phones may not reach phone_url (loopback-only server, no network).")


class SessionItem(BaseModel):
    position: int = Field(description="1, 2, ... in arrival order.")
    received_at: str
    thumbnail: str = Field(description="data:image/jpeg;base64,... (the photo itself is not kept).")
    prediction_id: str
    predictions: list[Prediction]
    unknown: bool
    card: KnowledgeCard | None = None


class SessionResults(BaseModel):
    session_id: str
    expires_at: str
    expired: bool
    received: int = Field(description="Photos received so far.")
    max_uploads: int
    uploads: list[SessionItem] = Field(description="Those after the asked position, oldest first (at most 50).")
    warnings: list[RuleWarning] = Field(description="Rules matched across every photo of the session.")


class SessionUpload(BaseModel):
    position: int
    remaining: int = Field(description="Photos this session still accepts.")
    prediction_id: str
    predictions: list[Prediction]
    unknown: bool
    card: KnowledgeCard | None = None
    warnings: list[RuleWarning] = Field(description="Rules matched across every photo of the session so far.")
