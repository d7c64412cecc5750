//! Maps and sets keyed by [`ClientId`], hashed for what the ids are.
//!
//! Every client asks its hub for its next frame once per frame, so the hub looks a client up tens of
//! thousands of times a second at a few thousand clients. The standard SipHash, built to withstand keys an
//! attacker chooses, showed as 2% of the server's time there; client ids are numbers the hub hands out
//! itself, one after the other, so a multiplication that spreads them over the hash's high bits (which the
//! table's probing uses) is enough.

use super::ClientId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from client ids.
pub type IdMap<V> = HashMap<ClientId, V, BuildHasherDefault<IdHasher>>;
/// A set of client ids.
pub type IdSet = HashSet<ClientId, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` id.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by ClientId (which writes one u64), but correct for any key: fold the bytes in.
        for &b in bytes {
            self.write_u64(self.0 ^ b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let mut top = HashSet::new();
        for id in 0..128u64 {
            top.insert(build.hash_one(ClientId(id)) >> 57);
        }
        // 128 ids over the 128 values of the top 7 bits: a good spread hits most of them.
        assert!(top.len() > 70, "{} distinct", top.len());
    }

    #[test]
    fn maps_keep_every_client() {
        let mut m: IdMap<u64> = IdMap::default();
        for id in 0..10_000 {
            m.insert(ClientId(id), id * 2);
        }
        assert!((0..10_000).all(|id| m[&ClientId(id)] == id * 2));
        let s: IdSet = (0..100).map(ClientId).collect();
        assert!(s.contains(&ClientId(99)) && !s.contains(&ClientId(100)));
    }
}
