"""Sound galleries: audio clips and a label vocabulary embedded by one model, so a place's fused
embedding can be asked "what would I hear here?" (docs/ARCHITECTURE.md, "Listening")."""
