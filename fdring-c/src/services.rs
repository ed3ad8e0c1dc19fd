//! Services: placeholder.
