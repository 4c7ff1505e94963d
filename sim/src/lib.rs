//! The WhatsApp network simulator.
