// STUB: replaced by the engine implementation.
