//! The simulation's only source of randomness: a small, stable, seeded generator.
//!
//! The generator is xoshiro256** (Blackman and Vigna, 2018), its state filled by SplitMix64.
//! Both are a few lines of integer arithmetic, so every machine of the mesh, today and in later
//! versions of this program, draws the same numbers from the same seed; a replayed log gives the
//! same combat. The algorithms are part of the log format: changing them changes what old logs
//! replay to. The tests pin their outputs.
//!
//! Randomness in a tick is seeded from the system and the tick number ([`Rng::for_tick`]), never
//! from a clock or the OS. This module never does I/O and is not for secrets (access tokens come
//! from the OS in `net`).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Golden-ratio increment of SplitMix64.
const SPLITMIX64_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// xxh3 seed for a system's seed, so it differs from every other hash of the slug.
const SYSTEM_SEED_DOMAIN: u64 = 0x6d6c_7472_6164_6572; // "mltrader"

/// xxh3 seed for combining a system seed with a tick.
const TICK_SEED_DOMAIN: u64 = 0x7469_636b_7365_6564; // "tickseed"

/// One step of SplitMix64 (Steele, Lea and Flood, 2014): advances `state` and returns the next
/// output. Used to spread one 64-bit seed over xoshiro's 256 bits of state.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(SPLITMIX64_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stable seed of a star system, from its slug (which names it in the galaxy file and on
/// disk). Every node computes the same seed for the same system.
pub fn system_seed(slug: &str) -> u64 {
    xxh3_64_with_seed(slug.as_bytes(), SYSTEM_SEED_DOMAIN)
}

/// A xoshiro256** generator. Cheap to create: make one per tick with [`Rng::for_tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    /// Never all zero (xoshiro would then only produce zeros); SplitMix64 cannot produce four
    /// zeros in a row, so seeding keeps this.
    state: [u64; 4],
}

impl Rng {
    /// A generator whose state is four SplitMix64 outputs from `seed`.
    pub fn from_seed(seed: u64) -> Rng {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng::from_state(state)
    }

    /// A generator with exactly this state (for pinning test vectors). `state` must not be all
    /// zero.
    pub fn from_state(state: [u64; 4]) -> Rng {
        assert!(state != [0; 4], "xoshiro256** state must not be all zero");
        Rng { state }
    }

    /// The generator of one system's tick: seeded from the system's seed ([`system_seed`]) and
    /// the tick number, so a replay of that tick draws the same numbers, and two ticks (or two
    /// systems) draw unrelated ones.
    pub fn for_tick(system_seed: u64, tick: u64) -> Rng {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&system_seed.to_le_bytes());
        bytes[8..].copy_from_slice(&tick.to_le_bytes());
        Rng::from_seed(xxh3_64_with_seed(&bytes, TICK_SEED_DOMAIN))
    }

    /// The next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in `0..bound`, without modulo bias (Lemire's multiply-and-reject).
    /// `bound` must be at least 1.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below needs a bound of at least 1");
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        let mut low = product as u64;
        if low < bound {
            let threshold = bound.wrapping_neg() % bound;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }

    /// A uniform number in `low..=high`. `low` must not exceed `high`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `percent` in 100 (at most 100).
    pub fn chance_percent(&mut self, percent: u32) -> bool {
        assert!(
            percent <= 100,
            "a chance of {percent}% is not a probability"
        );
        self.below(100) < u64::from(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    // Explicit, so it wins over proptest's prelude (which exports rand's `Rng` trait).
    use super::Rng;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut s), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_the_reference_outputs() {
        let mut r = Rng::from_state([1, 2, 3, 4]);
        assert_eq!(r.next_u64(), 11_520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1_509_978_240);
        assert_eq!(r.next_u64(), 1_215_971_899_390_074_240);
    }

    /// Pins the whole seeding path (xxh3 + SplitMix64 + xoshiro): if this changes, old logs
    /// replay to different combats.
    #[test]
    fn tick_seeding_is_stable_across_versions() {
        let seed = system_seed("sol");
        let a: Vec<u64> = {
            let mut r = Rng::for_tick(seed, 42);
            (0..3).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_tick(seed, 42);
            (0..3).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(Rng::for_tick(seed, 43), Rng::for_tick(seed, 42));
        assert_ne!(
            Rng::for_tick(system_seed("vega"), 42),
            Rng::for_tick(seed, 42)
        );
        assert_eq!(
            Rng::for_tick(seed, 42).next_u64(),
            PINNED_SOL_TICK_42,
            "the seeding of tick randomness changed; old logs would replay differently"
        );
    }

    const PINNED_SOL_TICK_42: u64 = 4_671_683_453_838_364_842;

    proptest! {
        #[test]
        fn bounded_draws_stay_in_range(seed: u64, bound in 1u64.., low: u64, span: u64) {
            let mut r = Rng::from_seed(seed);
            prop_assert!(r.below(bound) < bound);
            let high = low.saturating_add(span);
            let x = r.range_inclusive(low, high);
            prop_assert!(low <= x && x <= high);
        }
    }
}
