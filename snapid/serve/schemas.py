"""Request and response models of every route: the OpenAPI schema documents every answer, errors included."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from snapid.feedback.new_class import MAX_NAME, MAX_PHOTOS, MIN_PHOTOS
from snapid.feedback.service import MAX_LABEL, MAX_TEXT


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable code, e.g. corrupt_image, overloaded.")
    message: str = Field(description="What was wrong, naming the file or value at fault.")


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str = Field(description="Digest of the bundle's manifest, which pins every file in it.")


class ReferencePhoto(BaseModel):
    id: str = Field(description="Opaque id of a reference photo in the served bundle.")
    url: str = Field(description="Its thumbnail (JPEG): /api/v1/references/{id}.")
    similarity: float = Field(description="Cosine similarity of its embedding to the query's, -1 to 1.")


class Prediction(BaseModel):
    index: int = Field(description="Position of the class in the model's output.")
    id: str = Field(description="The class label id.")
    name: str
    display_name: str = Field(description="Name in the requested language when the bundle has it, else name.")
    score: float = Field(ge=0, le=1, description="Calibrated probability.")
    references: list[ReferencePhoto] = Field(default_factory=list, description="The class's training photos most "
                                             "similar to the query, best first (up to 3; empty when the bundle has "
                                             "no reference photos).")


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


class KnowledgeRow(BaseModel):
    """A row of a joined knowledge table (discounts, prices) valid now, in the server's time zone (issue 21)."""
    table: str = Field(description="The table's name, e.g. discounts.")
    fields: list[CardField] = Field(description="Its columns in file order (a column per language: the asked one).")
    valid_from: str = Field(description="ISO date or date-time it is valid from; empty: no start.")
    valid_to: str = Field(description="ISO date (that whole day included) or date-time it is valid until; "
                          "empty: no end.")


class PlaceNearby(BaseModel):
    name: str = Field(description="In the requested language, else English, else any.")
    names: dict[str, str] = Field(default_factory=dict)
    category: str = Field(description="food, lodging, sight or another word from the places file.")
    lat: float
    lon: float
    address: str
    link: str
    distance_m: int = Field(description="Great-circle distance from the recognised place, in metres.")


class Location(BaseModel):
    lat: float
    lon: float


class MapConfig(BaseModel):
    tile_url: str = Field(description="Tile URL template ({z}/{x}/{y}); empty: no map, the places are listed only.")
    attribution: str = Field(description="Shown on the map, as the tile server asks.")


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
    rows: list[KnowledgeRow] = Field(default_factory=list, description="Its rows of joined knowledge tables valid "
                                     "now (e.g. this week's discounts).")
    location: Location | None = Field(None, description="Where the class is (a landmark), when its card says.")
    places: list[PlaceNearby] = Field(default_factory=list, description="With a location: the nearest places of each "
                                      "category, nearest first within a category.")


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
    knowledge_version: int | None = None
    box: list[float] | None = Field(None, min_length=4, max_length=4, description="mode=detect: the detected box "
                                    "[x1, y1, x2, y2] in pixels of the upright original photo.")
    detector_score: float | None = Field(None, ge=0, le=1, description="mode=detect: the detector's score for the box.")


class Heatmap(BaseModel):
    """explain=true: where the model looked in one photo, for the class it answered (issue 19)."""
    photo: int = Field(description="Position of the photo in the request, from 0.")
    class_index: int = Field(description="The class explained: the answer's best (mode=each: this photo's best).")
    class_id: str
    grid: list[list[float]] = Field(description="h x w class activation map (e.g. 9 x 9), scaled 0..1 (1 = the "
                                    "strongest evidence for the class), row 0 at the top. It covers the square the "
                                    "model saw: the centred square of the upright photo (resize=crop) or the whole "
                                    "photo letterboxed in a square (resize=letterbox).")
    peak: list[int] = Field(min_length=2, max_length=2, description="[row, column] of the grid's highest cell.")
    resize: str = Field(description="crop or letterbox: how the photo was fitted to the square the grid covers.")
    overlay: str = Field(description="The map as a transparent PNG data: URI (4 px a cell, smoothed), to lay over "
                         "the square the grid covers.")


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
    knowledge_version: int | None = Field(None, description="The knowledge version the answer used (cards, rules, "
                                          "tables, places); null when there is none.")
    knowledge_source: str | None = Field(None, description="database (kept current while serving) or bundle (its "
                                         "knowledge.json); null when there is no knowledge.")
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
    explain: list[Heatmap] | None = Field(None, description="explain=true: one heatmap per photo; else null.")


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
    explain: bool = Field(False, description="Whether predict?explain=true can answer heatmaps (the bundle's graph "
                          "gives class activation maps).")


class ClassInfo(BaseModel):
    index: int
    id: str
    name: str
    display_names: dict[str, str]


class ClassList(BaseModel):
    model: ModelRef
    classes: list[ClassInfo]


class Subset(BaseModel):
    name: str
    classes: list[str] = Field(description="Class ids, as /api/v1/classes gives them.")


class SubsetList(BaseModel):
    model: ModelRef
    subsets: list[Subset] = Field(description="Named candidate subsets: predict?subset=NAME answers among one.")


class Health(BaseModel):
    status: str
    model: ModelRef | None = None
    detail: str | None = None


class ReloadResponse(BaseModel):
    reloaded: bool
    model: ModelRef


class KnowledgeImported(BaseModel):
    """POST /api/v1/admin/knowledge: the file stored as the served dataset's next knowledge version (issue 21)."""

    dataset: str = Field(description="The served model's dataset, which the knowledge was imported for.")
    knowledge_version: int = Field(description="The new knowledge version; answers carry it as knowledge_version "
                                               "once the server has picked it up (SNAPID_KNOWLEDGE_POLL_S).")
    kind: Literal["cards", "rules", "table", "places"]
    table: str | None = Field(None, description="kind=table: the joined table's name.")
    source: str = Field(description="The uploaded file's name, as stored with the version.")
    items: int = Field(description="Cards, rules, table rows or places stored.")
    unknown: list[str] = Field(default_factory=list, description="allow_unknown=true: class ids in the file the "
                                                                  "dataset lacks (skipped).")
    missing: list[str] = Field(default_factory=list, description="kind=cards: dataset classes without a card.")
    notes: list[str] = Field(default_factory=list)
    serving: bool = Field(description="Whether this server process already answers with the new version (other "
                                      "worker processes pick it up at their next poll).")


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


# --- feedback and review (routes/feedback.py, routes/review.py) --------------------------------------
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


# Exactly one of: a label, or not_in_list=true (documented in the schema, checked in the service).
ONE_ANSWER = {"oneOf": [
    {"required": ["label"], "properties": {"label": {"type": "string"}, "not_in_list": {"const": False}}},
    {"required": ["not_in_list"], "properties": {"not_in_list": {"const": True}, "label": {"type": "null"}}}]}


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_ANSWER)
    prediction_id: str = Field(pattern=UUID, description="The prediction_id a predict answer gave.")
    client_key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                            description="A random key per client: the same (prediction_id, client_key) is stored once.")
    label: str | None = Field(None, min_length=1, max_length=MAX_LABEL,
                              description="The right class id (matched exactly, else case- and space-insensitively "
                                          "against class ids and names; 422 when nothing or several match).")
    not_in_list: bool = Field(False, description="True when the right answer is none of the model's classes.")
    text: str = Field("", max_length=MAX_TEXT, description="Optional note, e.g. what it really is.")


class FeedbackOut(BaseModel):
    feedback_id: str
    created: bool = Field(description="False when this (prediction_id, client_key) was already stored: the first "
                                      "answer is kept.")
    status: str = Field(description="pending, approved or rejected")
    label: str | None = Field(description="The class id stored (normalised), or null for not_in_list.")
    not_in_list: bool


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["approve", "relabel", "reject"]
    label: str | None = Field(None, min_length=1, max_length=MAX_LABEL,
                              description="The right class id; required for relabel.")


MAX_NEW_CLASS_ITEMS = 100  # feedback items in one new class: each brings at least one photo, and 20 is the most


class NewClassIn(BaseModel):
    """POST /api/v1/review/new-class: approved "not in the list" feedback that becomes a class of the served bundle."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_NAME, description="The new class's name (its id is made from it).")
    feedback_ids: list[Annotated[str, Field(pattern=UUID)]] = Field(
        min_length=1, max_length=MAX_NEW_CLASS_ITEMS,
        description=f"Approved 'not in the list' feedback with no class yet; their kept photos ({MIN_PHOTOS} to "
                    f"{MAX_PHOTOS} distinct) make the class.")


class NewClassRef(BaseModel):
    id: str
    name: str
    index: int = Field(description="Its position in the model's output (the last).")


class BundleVersion(BaseModel):
    version: str = Field(description="The new bundle version add-class wrote in place.")
    sha256: str = Field(description="Digest of its manifest.")


class NewClassOut(BaseModel):
    class_: NewClassRef = Field(alias="class")
    bundle: BundleVersion
    photos: int = Field(description="Distinct photos the class was made from.")
    wins_own_photos: int = Field(description="How many of them the new model names as the new class.")
    feedback_ids: list[str] = Field(description="The feedback items, now approved with the new class id.")
    skipped: list[str] = Field(default_factory=list, description="Items a reviewer rejected, relabelled or merged "
                               "while the class was being made: left as the reviewer decided.")
    served: bool = Field(description="Whether this server already answers with the new version.")


class NewClassGroup(BaseModel):
    key: str = Field(description="The users' text, normalised (NFC, whitespace collapsed, case-folded); empty: none.")
    name: str = Field(description="A suggested class name: the first user's text.")
    feedback_ids: list[str]
    uploads: list[str] = Field(description="Upload ids of the group's distinct kept photos (thumbnails).")
    photos: int
    ready: bool = Field(description=f"Whether the photo count is within {MIN_PHOTOS} to {MAX_PHOTOS}.")


class NewClassGroups(BaseModel):
    groups: list[NewClassGroup]
    min_photos: int = MIN_PHOTOS
    max_photos: int = MAX_PHOTOS


# --- the experiments dashboard (routes/runs.py) ------------------------------------------------------
class RunBase(BaseModel):
    id: int
    name: str
    dataset: str
    dataset_version: int
    model: str
    kind: str = Field(description="train, tune-trial, compare, ensemble, ...")
    parent: str | None = Field(description="The sweep or comparison the run belongs to.")
    status: str = Field(description="queued, running, completed, failed or stopped.")
    monitor: str = Field(description="The validation metric that picks the best epoch.")
    best_metric: float | None
    best_epoch: int | None
    created_at: str | None = Field(description="ISO 8601, UTC.")
    started_at: str | None
    ended_at: str | None
    seconds: float | None = Field(description="Duration so far (to now while running).")
    epochs: int = Field(description="Epoch rows recorded.")
    last_epoch: int | None


class RunSummary(RunBase):
    test_top1: float | None = Field(description="Top-1 on the test split, once `snapid eval` ran.")
    test_macro_f1: float | None


class Facets(BaseModel):
    datasets: list[str]
    models: list[str]
    kinds: list[str]
    statuses: list[str]


class RunPage(BaseModel):
    total: int = Field(description="Runs matching the filters, over all pages.")
    offset: int
    limit: int
    next_offset: int | None = Field(description="The offset of the next page, or null on the last page.")
    items: list[RunSummary]
    facets: Facets = Field(description="The values present, for the filter menus.")


class Artifact(BaseModel):
    kind: str
    sha256: str
    created_at: str | None
    metrics: dict[str, Any] = Field(description="The artifact's headline numbers (scalar meta entries).")


class EvalResult(BaseModel):
    """`snapid eval`'s results for one split; sections appear when the evaluation wrote them."""

    model_config = ConfigDict(extra="allow")
    error: str | None = Field(None, description="Set instead of the results when the file cannot be read.")
    split: str | None = None
    n: int | None = None
    top1: float | None = None
    top5: float | None = None
    macro_top1: float | None = None
    macro_f1: float | None = None
    balanced_accuracy: float | None = None
    ece: float | None = None
    per_class: list[dict[str, Any]] | None = None
    confusion: dict[str, Any] | None = None
    reliability: list[dict[str, Any]] | None = None
    coverage: list[dict[str, Any]] | None = None
    mistakes: list[dict[str, Any]] | None = Field(None, description="Thumbnails are image data: URIs.")


class RunDetail(RunBase):
    host: str
    error: str
    heartbeat_at: str | None
    config: dict[str, Any]
    summary: dict[str, Any]
    artifacts: list[Artifact]
    calibration: dict[str, Any] | None = Field(description="Temperature and threshold, once calibrated.")
    evaluations: dict[str, EvalResult] = Field(description="Results by split; empty until `snapid eval`.")


class Epoch(BaseModel):
    epoch: int
    phase: str
    train_loss: float | None
    val_loss: float | None
    top1: float | None
    top5: float | None
    macro_f1: float | None
    lr: float | None
    seconds: float | None
    images_per_s: float | None
    created_at: str | None


class EpochPage(BaseModel):
    id: int
    name: str
    status: str = Field(description="Poll again while this is queued or running.")
    best_metric: float | None
    best_epoch: int | None
    epochs: list[Epoch]
    more: bool = Field(description="True when more epochs follow: ask again with after = the last epoch.")


class Comparison(BaseModel):
    runs: list[RunSummary]
    missing: list[str] = Field(description="Names asked for that match no run.")
    leaderboards: list[dict[str, Any]] = Field(description="One per dataset of the runs, when available.")
