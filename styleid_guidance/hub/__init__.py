"""The Hugging Face Hub: resolving a Hub id or local folder, and whether downloads may happen (`resolve`)."""
