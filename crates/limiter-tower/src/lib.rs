//! tower/axum rate-limit layer (work in progress).
