//! Synthetic probes for steerdns (being built).
