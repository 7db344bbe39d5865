//! The strict-mode index (proto/PROTOCOL.md section 12, "can match"): a token trie of the catalog entries'
//! patterns, with a `*` child and a `>` count per node, that answers "does `pattern` overlap one of the stored
//! patterns?" by walking the pattern's tokens instead of the entries.
//!
//! Each node also keeps two bit sets of the pattern lengths below it (`ends`: patterns whose last token is not
//! `>`, `gts`: patterns ending in `>`; bit `k` = `k` tokens). They make two things cheap:
//! * pruning: a subtree whose lengths cannot fit the checked pattern is not entered;
//! * a tail of the checked pattern made only of `*` and `>` (`shop.>`, `shop.*.*`): the overlap below a node then
//!   depends only on lengths, so it is one bit test, not a walk.
//!
//! Cost of [`Index::overlaps_any`]: one map lookup per literal token of the pattern; a `*` followed later by a
//! literal enters every child of the node it meets (pruned by length), so its worst case is the number of
//! distinct tokens at that depth, never more than the trie's nodes. Patterns shared by several entries are
//! counted, so removing one entry keeps the others' patterns.

use std::collections::HashMap;

/// A token trie of patterns (each assumed valid, section 1), counted.
#[derive(Debug, Default)]
pub struct Index {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    /// Patterns ending at this node (their last token is this node's, not `>`).
    end: u32,
    /// Patterns whose last token `>` follows this node.
    gt: u32,
    /// Bit `k`: a pattern of `k` tokens not ending in `>` ends in this subtree.
    ends: u32,
    /// Bit `k`: a pattern of `k` tokens ending in `>` ends in this subtree.
    gts: u32,
}

/// Bits `lo..=hi` (`hi` < 32).
fn bits(lo: usize, hi: usize) -> u32 {
    if lo > hi {
        return 0;
    }
    let upper = if hi >= 31 { u32::MAX } else { (1u32 << (hi + 1)) - 1 };
    upper & !((1u32 << lo) - 1)
}

impl Node {
    fn is_empty(&self) -> bool {
        self.end == 0 && self.gt == 0 && self.literals.is_empty() && self.star.is_none()
    }

    /// Could a pattern of this subtree overlap a checked pattern of `len` tokens (ending in `>` when `open`)?
    /// Exact when the checked pattern's tokens from this node's depth on are all `*` or `>`.
    fn fits(&self, len: usize, open: bool) -> bool {
        if open {
            // A stored pattern of at least `len` tokens meets the `>`; any stored `>` meets a token or the `>`.
            self.ends & bits(len, 31) != 0 || self.gts != 0
        } else {
            // Same length, or a stored `>` at a position where the checked pattern still has a token.
            self.ends & (1 << len) != 0 || self.gts & bits(0, len) != 0
        }
    }

    /// Recomputes `ends`/`gts` from the node's own counts and its children; stops scanning the children once
    /// `old` is reached again (the bits only ever shrink on a removal).
    fn recompute(&mut self, depth: usize, old: (u32, u32)) {
        let mut ends = if self.end > 0 { 1 << depth } else { 0 };
        let mut gts = if self.gt > 0 { 1 << (depth + 1) } else { 0 };
        let children = self.star.iter().map(|b| &**b).chain(self.literals.values());
        for child in children {
            if (ends, gts) == old {
                break;
            }
            ends |= child.ends;
            gts |= child.gts;
        }
        (self.ends, self.gts) = (ends, gts);
    }

    /// Removes one count of `tokens` (the pattern's tokens from this node's child on); false when absent.
    fn remove(&mut self, tokens: &[&str], depth: usize) -> bool {
        let old = (self.ends, self.gts);
        let removed = match tokens {
            [] => {
                if self.end == 0 {
                    return false;
                }
                self.end -= 1;
                true
            }
            [">"] => {
                if self.gt == 0 {
                    return false;
                }
                self.gt -= 1;
                true
            }
            ["*", rest @ ..] => {
                let Some(child) = self.star.as_deref_mut() else { return false };
                let removed = child.remove(rest, depth + 1);
                if child.is_empty() {
                    self.star = None;
                }
                removed
            }
            [token, rest @ ..] => {
                let Some(child) = self.literals.get_mut(*token) else { return false };
                let removed = child.remove(rest, depth + 1);
                if child.is_empty() {
                    self.literals.remove(*token);
                }
                removed
            }
        };
        if removed {
            self.recompute(depth, old);
        }
        removed
    }

    /// Whether `q[depth..]` overlaps a pattern of this subtree (the tokens before matched the path to it).
    /// `wild[i]`: `q[i..]` is only `*` and `>`.
    fn overlaps(&self, q: &[&str], wild: &[bool], depth: usize, open: bool) -> bool {
        if !self.fits(q.len(), open) {
            return false;
        }
        if wild[depth] {
            return true;
        }
        // Not wild: a literal comes at or after `depth`, so `q` has a token here that is not `>`.
        if self.gt > 0 {
            return true;
        }
        let rest = depth + 1;
        match q[depth] {
            "*" => {
                self.star.as_deref().is_some_and(|c| c.overlaps(q, wild, rest, open))
                    || self.literals.values().any(|c| c.overlaps(q, wild, rest, open))
            }
            token => {
                self.star.as_deref().is_some_and(|c| c.overlaps(q, wild, rest, open))
                    || self.literals.get(token).is_some_and(|c| c.overlaps(q, wild, rest, open))
            }
        }
    }
}

/// Most tokens of a pattern (section 1); the bit sets have room for them.
const MAX_TOKENS: usize = 16;

impl Index {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Adds one count of `pattern`.
    pub fn insert(&mut self, pattern: &str) {
        let tokens: Vec<&str> = pattern.split('.').collect();
        debug_assert!(tokens.len() <= MAX_TOKENS);
        let len = tokens.len();
        let open = tokens.last() == Some(&">");
        let (end_bit, gt_bit) = if open { (0, 1 << len) } else { (1 << len, 0) };
        let mut node = &mut self.root;
        for (i, token) in tokens.iter().enumerate() {
            node.ends |= end_bit;
            node.gts |= gt_bit;
            if *token == ">" && i + 1 == len {
                node.gt += 1;
                return;
            }
            node = match *token {
                "*" => node.star.get_or_insert_with(Box::default),
                token => node.literals.entry(token.into()).or_default(),
            };
        }
        node.ends |= end_bit;
        node.end += 1;
    }

    /// Removes one count of `pattern`; false when it was not in the index.
    pub fn remove(&mut self, pattern: &str) -> bool {
        let tokens: Vec<&str> = pattern.split('.').collect();
        self.root.remove(&tokens, 0)
    }

    /// Whether `pattern` overlaps (section 12) one of the indexed patterns.
    pub fn overlaps_any(&self, pattern: &str) -> bool {
        let q: Vec<&str> = pattern.split('.').collect();
        if q.len() > MAX_TOKENS {
            return false;
        }
        let open = q.last() == Some(&">");
        let mut wild = vec![true; q.len() + 1];
        for i in (0..q.len()).rev() {
            wild[i] = wild[i + 1] && matches!(q[i], "*" | ">");
        }
        self.root.overlaps(&q, &wild, 0, open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::catalog::entry::overlaps;
    use proptest::prelude::*;

    fn linear(stored: &[String], pattern: &str) -> bool {
        stored.iter().any(|p| overlaps(p, pattern))
    }

    /// A valid pattern over a small alphabet (so that overlaps are frequent): 1..6 tokens of `a`, `b`, `c` or
    /// `*`, the last one possibly `>`.
    fn pattern() -> impl Strategy<Value = String> {
        (prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 1..6), any::<bool>()).prop_map(
            |(mut tokens, open)| {
                if open {
                    *tokens.last_mut().unwrap() = ">";
                }
                tokens.join(".")
            },
        )
    }

    #[test]
    fn the_vectors_overlap_pairs_agree() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/vectors/catalog.json"))
            .expect("vectors");
        let vectors: serde_json::Value = serde_json::from_str(&text).expect("json");
        let pairs = vectors["overlap"].as_array().expect("overlap pairs");
        assert!(!pairs.is_empty());
        for pair in pairs {
            let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
            let want = pair["overlap"].as_bool().unwrap();
            for (stored, checked) in [(a, b), (b, a)] {
                let mut index = Index::default();
                index.insert(stored);
                assert_eq!(index.overlaps_any(checked), want, "{stored} stored, {checked} checked");
            }
        }
    }

    #[test]
    fn shared_patterns_are_counted_and_removal_prunes() {
        let mut index = Index::default();
        index.insert("shop.order.*");
        index.insert("shop.order.*");
        index.insert("shop.>");
        assert!(index.overlaps_any("shop.order.created"));
        assert!(index.remove("shop.>"));
        assert!(!index.remove("shop.>"), "only one count of it");
        assert!(!index.overlaps_any("shop.order.created.42"), "the > is gone");
        assert!(index.remove("shop.order.*"));
        assert!(index.overlaps_any("shop.order.x"), "the second count stays");
        assert!(index.remove("shop.order.*"));
        assert!(!index.overlaps_any(">") && index.is_empty(), "every node is pruned");
        assert!(!index.remove("never.stored"));
    }

    #[test]
    fn a_wide_level_is_found_through_a_star() {
        let mut index = Index::default();
        for i in 0..1000 {
            index.insert(&format!("bench.cat.e{i}.*"));
        }
        index.insert("bench.fan.*");
        assert!(index.overlaps_any("bench.fan.>"));
        assert!(index.overlaps_any("bench.*.e999.x"));
        assert!(!index.overlaps_any("bench.*.e1000.x"));
        assert!(!index.overlaps_any("bench.*.*.*.*"), "no pattern of 5 tokens: pruned by length");
        assert!(index.overlaps_any("*.*.*.*"));
        assert!(!index.overlaps_any("bench.cat.e5"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The trie answers what the linear rule of section 12 answers, after inserts and removals.
        #[test]
        fn the_trie_agrees_with_the_linear_rule(
            stored in prop::collection::vec(pattern(), 0..12),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            checked in prop::collection::vec(pattern(), 1..12),
        ) {
            let mut index = Index::default();
            for p in &stored {
                index.insert(p);
            }
            let mut kept = stored.clone();
            for r in &removed {
                if kept.is_empty() {
                    break;
                }
                let p = kept.remove(r.index(kept.len()));
                prop_assert!(index.remove(&p));
            }
            for q in &checked {
                prop_assert_eq!(index.overlaps_any(q), linear(&kept, q), "{} against {:?}", q, kept);
            }
            prop_assert_eq!(index.is_empty(), kept.is_empty());
        }
    }
}
