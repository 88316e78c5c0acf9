"""The REST interface of workflows: a thin transport over ``workflow_bridge.services`` (writes)
and ``workflow_bridge.selectors`` (reads). ``inputs`` parses bodies and queries strictly,
``outputs`` holds the wire formats (TypedDicts, from which the OpenAPI schemas are derived),
and one module per resource holds the views."""
