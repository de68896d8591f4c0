//! The connection pool: a slab whose key is the backend token, so every event finds its
//! connection in O(1) and no list is ever walked to find one.

use std::io;

use slab::Slab;

use crate::backend::Token;

/// Live connections keyed by [`Token`]. Generic so its logic is tested without sockets.
#[derive(Debug)]
pub struct Pool<T> {
    slab: Slab<T>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { slab: Slab::new() }
    }
}

impl<T> Pool<T> {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves a token, lets `make` register under it and build the entry, and keeps the entry
    /// only if `make` succeeds. On error nothing is inserted and the token is free again
    /// (rollback, as async-io's `insert_io` does).
    ///
    /// # Errors
    ///
    /// `make`'s error, or `InvalidInput` if the next free key would collide with a reserved token.
    pub fn insert_with(&mut self, make: impl FnOnce(Token) -> io::Result<T>) -> io::Result<Token> {
        let entry = self.slab.vacant_entry();
        let token = Token(entry.key());
        if token.is_reserved() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connection pool is out of tokens",
            ));
        }
        entry.insert(make(token)?);
        Ok(token)
    }

    /// The entry for `token`, if it is live.
    pub fn get(&self, token: Token) -> Option<&T> {
        self.slab.get(token.0)
    }

    /// The entry for `token`, if it is live.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slab.get_mut(token.0)
    }

    /// Takes the entry out; its token may be handed out again.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.slab.try_remove(token.0)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every live entry with its token.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &T)> {
        self.slab.iter().map(|(key, value)| (Token(key), value))
    }

    /// Every live entry with its token.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Token, &mut T)> {
        self.slab.iter_mut().map(|(key, value)| (Token(key), value))
    }

    /// Every live token, collected (for removing while walking).
    pub fn tokens(&self) -> Vec<Token> {
        self.slab.iter().map(|(key, _)| Token(key)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut pool = Pool::new();
        let a = pool.insert_with(|_| Ok("a")).unwrap();
        let b = pool.insert_with(|_| Ok("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.get(a), Some(&"a"));
        assert_eq!(pool.remove(a), Some("a"));
        assert_eq!(pool.remove(a), None, "double remove is harmless");
        assert_eq!(pool.get(a), None);
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn make_sees_the_token_it_will_live_under() {
        let mut pool = Pool::new();
        let token = pool.insert_with(Ok).unwrap();
        assert_eq!(pool.get(token), Some(&token));
    }

    #[test]
    fn failed_registration_rolls_back() {
        let mut pool: Pool<&str> = Pool::new();
        let kept = pool.insert_with(|_| Ok("kept")).unwrap();
        let err = pool
            .insert_with(|_| Err(io::Error::other("register failed")))
            .unwrap_err();
        assert_eq!(err.to_string(), "register failed");
        assert_eq!(pool.len(), 1);
        // The token the failed insert saw is handed out again.
        let next = pool.insert_with(|_| Ok("next")).unwrap();
        assert_eq!(next, Token(kept.0 + 1));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn freed_tokens_are_reused_and_pool_empties() {
        let mut pool = Pool::new();
        for round in 0..5_000 {
            let t = pool.insert_with(|_| Ok(round)).unwrap();
            assert_eq!(t, Token(0), "a freed slot is reused, no growth");
            assert_eq!(pool.remove(t), Some(round));
        }
        assert!(pool.is_empty());
    }

    #[test]
    fn iteration_sees_only_live_entries() {
        let mut pool = Pool::new();
        let tokens: Vec<Token> = (0..5)
            .map(|i| pool.insert_with(|_| Ok(i)).unwrap())
            .collect();
        pool.remove(tokens[1]);
        pool.remove(tokens[3]);
        let live: Vec<(Token, i32)> = pool.iter_mut().map(|(t, v)| (t, *v)).collect();
        assert_eq!(live, vec![(tokens[0], 0), (tokens[2], 2), (tokens[4], 4)]);
        assert_eq!(pool.tokens(), vec![tokens[0], tokens[2], tokens[4]]);
    }
}
