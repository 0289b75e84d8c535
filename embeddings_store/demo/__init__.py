"""The embedded demo world: real geodata from PyPI packages, synthetic but geographically and
temporally structured soundscapes with known ground truth (docs/ARCHITECTURE.md, "The demo")."""

# The sound classes of the demo world, in a fixed order (indices are used in stored labels).
CLASS_NAMES: tuple[str, ...] = (
    "songbirds",
    "insects",
    "frogs",
    "farm_animals",
    "rooster",
    "road_traffic",
    "horns_sirens",
    "crowd",
    "construction",
    "waves",
    "wind",
    "rain_thunder",
    "bells",
    "stream",
)
