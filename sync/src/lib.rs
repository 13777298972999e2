//! Replication core (issue 3): sans-IO state machines that decide what to send a peer. Not yet built.
