"""The Textual dashboard: the only package that imports Textual.

It calls the Controller (``ocrtui.control``) and the comparison runner; it does no I/O itself.
"""
