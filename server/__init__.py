"""Editors' side of infill: the model daemon (websockets) and the language server (pygls), sharing one protocol."""
