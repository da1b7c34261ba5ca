//! H.264: avcC records and SPS parsing.
