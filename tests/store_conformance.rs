//! The store conformance suite, run against every embedded backend.

mod support;

mod memory {
    ratchet::store_conformance_tests!(super::support::MemoryFactory);
}

mod sqlite {
    ratchet::store_conformance_tests!(super::support::SqliteFactory::new());
}
