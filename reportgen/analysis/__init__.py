"""Everything that runs a model: the only package that imports torch, timm and pytorch-grad-cam.
Each analysis takes a model and inputs and returns a frozen dataclass; nothing here writes files."""
