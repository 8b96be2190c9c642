"""The pod agent (``agent.py``): shipped to the pod as source, so it imports nothing from ocrtui."""
