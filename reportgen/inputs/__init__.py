"""What the user gives: images and their annotations (CSV manifest, Pascal VOC), battery files, the backbone
registry and the validated analysis config. No model code."""
