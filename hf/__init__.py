"""Local Hugging Face checkpoints: resolution (never a download), checks, hashing, quiet loading,
device/dtype, and the settings every model-backed component shares. A leaf: imports nothing of ours."""
