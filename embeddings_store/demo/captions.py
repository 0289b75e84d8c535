"""Captions for demo-world clips, in the three caption styles of the training data
(docs/ARCHITECTURE.md, "The demo").

Source 0 ('meta') reads like recording metadata, source 1 ('qwen') like a generated descriptive
sentence and source 2 ('pengi') like a short audio tag. Each class has several phrasings per
style so the text tower never sees one fixed string per class; the choice is drawn from the
caller's generator, so captions are deterministic given its state.
"""

from __future__ import annotations

import numpy as np

from embeddings_store.demo import CLASS_NAMES

SOURCES: tuple[str, ...] = ("meta", "qwen", "pengi")

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# Descriptive noun phrases, used inside full sentences (qwen style).
_PHRASES: dict[str, tuple[str, ...]] = {
    "songbirds": (
        "birds singing",
        "a chorus of songbirds",
        "chirping and tweeting of small birds",
        "several birds calling to each other",
        "melodic bird song with quick trills",
    ),
    "insects": (
        "insects buzzing",
        "the steady drone of cicadas",
        "crickets chirping in rhythmic pulses",
        "a high-pitched hum of insects",
        "a chorus of crickets and cicadas",
    ),
    "frogs": (
        "frogs croaking",
        "a chorus of frogs",
        "toads calling in a rhythmic chorus",
        "the repeated croaks of frogs near water",
        "ribbiting frogs in a pond",
    ),
    "farm_animals": (
        "cows mooing",
        "sheep bleating",
        "farm animals calling",
        "livestock mooing and bleating in a field",
        "a cow lowing in the pasture",
    ),
    "rooster": (
        "a rooster crowing",
        "a cockerel calling",
        "the loud crow of a rooster",
        "a rooster crowing with hens clucking nearby",
        "a cock-a-doodle-doo from a farmyard",
    ),
    "road_traffic": (
        "road traffic",
        "cars driving past",
        "the hum of passing vehicles",
        "steady traffic noise on a busy road",
        "engines and tyres rolling by on a street",
    ),
    "horns_sirens": (
        "a siren wailing",
        "car horns honking",
        "an emergency vehicle siren passing by",
        "honking horns in traffic",
        "the rising and falling wail of an ambulance",
    ),
    "crowd": (
        "people talking",
        "the murmur of a crowd",
        "many voices chattering at once",
        "a busy crowd in a public square",
        "indistinct conversation and babble",
    ),
    "construction": (
        "construction work",
        "hammering and drilling",
        "a jackhammer breaking concrete",
        "machinery running on a building site",
        "power tools and banging on a construction site",
    ),
    "waves": (
        "ocean waves",
        "waves crashing on the shore",
        "the surf rolling onto a beach",
        "breaking waves and receding water",
        "the sea washing over pebbles",
    ),
    "wind": (
        "wind blowing",
        "strong gusts of wind",
        "wind howling",
        "a breeze rushing through open country",
        "gusting wind whistling past",
    ),
    "rain_thunder": (
        "rain falling",
        "a thunderstorm with heavy rain",
        "raindrops pattering on the ground",
        "rain and distant thunder",
        "a downpour with rumbling thunder",
    ),
    "bells": (
        "bells ringing",
        "church bells chiming",
        "a bell tolling",
        "a peal of bells from a tower",
        "the resonant ringing of bells",
    ),
    "stream": (
        "a flowing stream",
        "water babbling over stones",
        "a gurgling brook",
        "a small river running",
        "the trickle and bubbling of a creek",
    ),
}

# Short tag-like phrases (pengi style).
_TAGS: dict[str, tuple[str, ...]] = {
    "songbirds": ("bird song", "birds chirping", "birdsong", "bird calls", "tweeting birds"),
    "insects": ("insects", "cicadas", "crickets chirping", "insect buzz", "bugs buzzing"),
    "frogs": ("frogs", "frog croaking", "frog chorus", "toads", "croaking"),
    "farm_animals": ("cow moo", "sheep bleat", "livestock", "farm animals", "cattle"),
    "rooster": ("rooster", "rooster crowing", "cockerel", "chicken crow", "crowing"),
    "road_traffic": ("traffic", "road noise", "cars passing", "vehicle traffic", "car engine"),
    "horns_sirens": ("siren", "car horn", "honking", "ambulance siren", "police siren"),
    "crowd": ("crowd", "people talking", "chatter", "babble", "crowd murmur"),
    "construction": ("construction", "hammering", "drilling", "jackhammer", "machinery"),
    "waves": ("waves", "ocean", "surf", "sea waves", "waves crashing"),
    "wind": ("wind", "wind gusts", "howling wind", "windy", "breeze"),
    "rain_thunder": ("rain", "thunder", "thunderstorm", "rainfall", "heavy rain"),
    "bells": ("bells", "church bell", "bell ringing", "chimes", "tolling bell"),
    "stream": ("stream", "running water", "brook", "creek", "water flowing"),
}

# Metadata-style subject labels and habitats (meta style).
_META: dict[str, tuple[str, ...]] = {
    "songbirds": ("dawn chorus", "songbirds", "passerine song", "bird vocalisations"),
    "insects": ("insect chorus", "cicadas", "orthoptera", "crickets at night"),
    "frogs": ("anuran chorus", "frog calls", "frogs", "amphibian chorus"),
    "farm_animals": ("cattle", "sheep and cows", "livestock", "farm animals"),
    "rooster": ("rooster crow", "domestic chicken", "cockerel", "poultry"),
    "road_traffic": ("road traffic", "traffic noise", "vehicles passing", "urban traffic"),
    "horns_sirens": ("siren", "car horns", "emergency vehicle", "horns and sirens"),
    "crowd": ("crowd ambience", "walla", "people talking", "market crowd"),
    "construction": ("construction site", "building works", "power tools", "heavy machinery"),
    "waves": ("ocean surf", "waves", "shoreline", "breaking waves"),
    "wind": ("wind", "wind ambience", "gusts", "strong wind"),
    "rain_thunder": ("rain", "thunderstorm", "rain on ground", "rain and thunder"),
    "bells": ("church bells", "bells", "bell tower", "bell peal"),
    "stream": ("stream", "brook", "running water", "river"),
}

_HABITATS: dict[str, tuple[str, ...]] = {
    "songbirds": ("forest edge", "woodland", "garden", "park", "hedgerow"),
    "insects": ("meadow", "grassland", "scrub", "forest", "savanna"),
    "frogs": ("pond", "wetland", "marsh", "riverbank", "rice paddy"),
    "farm_animals": ("pasture", "farm", "field", "barnyard"),
    "rooster": ("farmyard", "village", "smallholding", "rural homestead"),
    "road_traffic": ("roadside", "city street", "highway", "town centre"),
    "horns_sirens": ("city street", "intersection", "downtown", "main road"),
    "crowd": ("public square", "market", "station concourse", "street"),
    "construction": ("building site", "city block", "roadworks", "urban street"),
    "waves": ("beach", "rocky coast", "shoreline", "harbour wall"),
    "wind": ("open plain", "hilltop", "coast", "mountain ridge", "desert"),
    "rain_thunder": ("forest", "city rooftop", "open field", "garden"),
    "bells": ("church square", "old town", "village", "monastery"),
    "stream": ("forest stream", "mountain valley", "woodland", "rocky creek"),
}

_META_PREFIXES = ("field recording", "ambience", "soundscape", "location recording")

_SENTENCES = (
    "The sound of {p}{when}.",
    "A recording of {p}{when}.",
    "In this clip you can hear {p}{when}.",
    "This audio captures {p}{when}.",
    "{P} can be heard{when}.",
)


def _part_of_day(hour: int) -> str:
    if 4 <= hour < 7:
        return "dawn"
    if 7 <= hour < 11:
        return "morning"
    if 11 <= hour < 14:
        return "midday"
    if 14 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 21:
        return "evening"
    return "night"


def _when(rng: np.random.Generator, month: int | None, hour: int | None) -> str:
    """A time clause for a sentence; sometimes left out, as real captions often omit it."""
    parts: list[str] = []
    if hour is not None and rng.random() < 0.7:
        day = _part_of_day(hour)
        parts.append(
            {
                "dawn": " at dawn",
                "morning": " in the morning",
                "midday": " around midday",
                "afternoon": " in the afternoon",
                "evening": " in the evening",
                "night": " at night",
            }[day]
        )
    if month is not None and rng.random() < 0.5:
        parts.append(f" in {_MONTHS[month - 1]}")
    return "".join(parts)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(
    class_index: int,
    rng: np.random.Generator,
    source: int,
    month: int | None = None,
    hour: int | None = None,
) -> str:
    """A caption for a clip of `class_index` in the style of caption source 0/1/2."""
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"class_index must be in [0, {len(CLASS_NAMES)}), got {class_index}")
    if source not in (0, 1, 2):
        raise ValueError(f"source must be 0 (meta), 1 (qwen) or 2 (pengi), got {source}")
    if month is not None and not 1 <= month <= 12:
        raise ValueError(f"month must be in 1..12, got {month}")
    if hour is not None and not 0 <= hour <= 23:
        raise ValueError(f"hour must be in 0..23, got {hour}")
    name = CLASS_NAMES[class_index]
    if source == 0:
        fields = [_pick(rng, _META[name]), _pick(rng, _HABITATS[name])]
        if month is not None:
            fields.append(_MONTHS[month - 1])
        if hour is not None:
            fields.append(_part_of_day(hour))
        return f"{_pick(rng, _META_PREFIXES)}: {', '.join(fields)}"
    if source == 1:
        phrase = _pick(rng, _PHRASES[name])
        template = _pick(rng, _SENTENCES)
        return template.format(
            p=phrase, P=phrase[0].upper() + phrase[1:], when=_when(rng, month, hour)
        )
    tags = _TAGS[name]
    first = int(rng.integers(len(tags)))
    if rng.random() < 0.3:  # tag lists sometimes carry a second tag
        second = (first + 1 + int(rng.integers(len(tags) - 1))) % len(tags)
        return f"{tags[first]}, {tags[second]}"
    return tags[first]


# One free-form map query per class, worded unlike any training caption (tests that the frozen
# sentence encoder lets queries generalise beyond the templates).
CLASS_QUERIES: tuple[str, ...] = (
    "songbirds singing at sunrise",
    "cicadas and crickets on a warm night",
    "frogs calling from a marsh",
    "cattle and sheep on a farm",
    "a rooster crowing in a village",
    "busy road with cars and trucks",
    "police sirens and honking horns",
    "a crowd of people chatting",
    "a construction site with machinery",
    "surf breaking on a beach",
    "strong wind in open country",
    "a thunderstorm with heavy rain",
    "church bells ringing",
    "a brook flowing over rocks",
)
