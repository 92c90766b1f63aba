"""Tools that talk to a running ComfyUI (the HTTP queue client); they use the core only."""
