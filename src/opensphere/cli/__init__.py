"""The `sphere` command tree, in the spirit of Azure Sphere's `azsphere`."""
