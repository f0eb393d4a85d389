"""Core types and declarations shared by every layer: request data and recipes (:mod:`.types`),
declared method parameter spaces (:mod:`.space`) and result statuses (:mod:`.status`)."""
