//! AAC: AudioSpecificConfig parsing.
