//! What every target is given and returns: the features an input reached,
//! the target's description, and the `invariant!` check.

use std::hash::{Hash, Hasher};

/// What an input reached, as hashes the driver compares with those seen before.
#[derive(Debug, Default)]
pub struct Features {
    list: Vec<u64>,
}

impl Features {
    /// Records one feature: a kind (`"op"`, `"error"`, ...) and a value.
    pub fn add(&mut self, kind: &str, value: impl Hash) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kind.hash(&mut h);
        value.hash(&mut h);
        self.list.push(h.finish());
    }

    pub fn clear(&mut self) {
        self.list.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.list.iter().copied()
    }
}

/// A fuzz target: its name, what it tests, its function, and the tokens the
/// driver splices into inputs.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[u8], &mut Features),
    /// Tokens of the input language (keywords, path segments, JSON pieces).
    pub dictionary: &'static [&'static str],
    /// The longest input the driver makes by mutation.
    pub max_len: usize,
}

/// Panics with an invariant's name and the values involved: the driver
/// reports it like any other panic.
macro_rules! invariant {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("invariant broken: {}", format!($($arg)+));
        }
    };
}
pub(crate) use invariant;
