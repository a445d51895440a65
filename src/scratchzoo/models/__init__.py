"""One file per architecture; each reads top to bottom like the chapter that explains it."""
