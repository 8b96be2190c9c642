"""Screens: the dashboard, the comparison, and the modal dialogs."""
