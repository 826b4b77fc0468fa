//! The `#[cache_result]` hit path: a copy of the L1 value, from this thread's near cache
//! when it has a current one (see `near.rs`), else from L1 with the key written once.

use super::Engine;
use crate::cache::{
    CacheValue, Tier,
    entry::Lookup,
    fingerprint::{CallArguments, Fingerprint, WidePrint},
    key::{with_key, write_function_key},
    memoized::Memoized,
    near::{NearKey, NearPrint},
    stats::{Event, Op},
};
use crate::striped::ThreadStripe;

impl Engine {
    /// A copy of the L1 value of the call of `function` with `arguments` (the key
    /// [`function_key`](crate::cache::function_key) gives), counted as a `get_or_load` hit and
    /// a hit of `function`. A miss is not counted, since the load that follows counts it.
    /// Repeats are served from this thread's near cache, which every L1 change keeps coherent.
    #[inline(always)]
    pub(crate) fn hit_for_call<T: CacheValue + Clone, A: CallArguments>(
        &self,
        function: &'static Memoized,
        arguments: &A,
    ) -> Option<T> {
        if !self.is_enabled() {
            return None;
        }
        let path = function.function();
        let write_l1_key = |out: &mut String| {
            // Unencodable arguments give a key nothing is stored under: a miss.
            let _encoded = write_function_key(out, path, arguments);
        };
        // By reference: a copy of the closure (the path and the arguments' address) was read
        // back wider than it was written, stalling the processor's store forwarding.
        let Some(print) = Fingerprint::of_arguments(arguments) else {
            return self.hit_for_wide_call(function, arguments, &write_l1_key);
        };
        // Short or long told here, while the words are values, and only a long print's copy
        // has its address taken. With the print itself referenced (`NearPrint::of(&print)`),
        // it was stored, and a number's zero words were read back from memory on every hit:
        // 1k-key hits took 1.90-1.94x `cached`'s speed instead of 2.00-2.08x (`hit_sweep`).
        match print.short() {
            Some(short) => self.hit_near(function, NearPrint::Short(short), &write_l1_key),
            None => {
                let long = print;
                self.hit_near(function, NearPrint::Long(&long), &write_l1_key)
            }
        }
    }

    /// [`hit_for_call`](Self::hit_for_call) for arguments past a fingerprint (a long
    /// string): near under their wide print, else from L1.
    #[inline(never)]
    fn hit_for_wide_call<T: CacheValue + Clone, A: CallArguments>(
        &self,
        function: &'static Memoized,
        arguments: &A,
        write_l1_key: &impl Fn(&mut String),
    ) -> Option<T> {
        WidePrint::with_arguments(arguments, |print| match print {
            Some(words) => self.hit_near(function, NearPrint::Wide(words), write_l1_key),
            None => with_key(write_l1_key, |l1_key| {
                self.hit_l1_for_load(function, l1_key)
            }),
        })
    }

    /// [`hit_for_call`](Self::hit_for_call) for a key of `function` written whole.
    #[inline]
    pub(crate) fn hit_for_key<T: CacheValue + Clone>(
        &self,
        function: &'static Memoized,
        key: &str,
    ) -> Option<T> {
        if !self.is_enabled() {
            return None;
        }
        let write_l1_key = |out: &mut String| out.push_str(key);
        Fingerprint::with_bytes(key.as_bytes(), |print| match print {
            Some(print) => self.hit_near(function, NearPrint::of(print), &write_l1_key),
            None => WidePrint::with_bytes(key.as_bytes(), |wide| match wide {
                Some(words) => self.hit_near(function, NearPrint::Wide(words), &write_l1_key),
                None => self.hit_l1_for_load(function, key),
            }),
        })
    }

    #[inline(always)]
    fn hit_near<T: CacheValue + Clone>(
        &self,
        function: &'static Memoized,
        print: NearPrint<'_>,
        write_l1_key: &impl Fn(&mut String),
    ) -> Option<T> {
        let near_key = NearKey {
            site: function.near_site(),
            print,
        };
        let stripe = ThreadStripe::current();
        if let Some(value) =
            self.l1
                .get_cloned_near::<T>(stripe, near_key, &self.clock, write_l1_key)
        {
            self.counters
                .record_on(stripe, Tier::L1, Event::Hit(Op::GetOrLoad));
            function.hit_on(stripe);
            return Some(value);
        }
        self.counted_fast_hit(function, self.near_miss(near_key, write_l1_key))
    }

    /// Out of line, so that the near hit around it stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn near_miss<T: CacheValue + Clone>(
        &self,
        near_key: NearKey<'_>,
        write_l1_key: impl FnOnce(&mut String),
    ) -> Lookup<T> {
        with_key(write_l1_key, |l1_key| {
            if l1_key.len() > self.max_key_bytes {
                return Lookup::Miss;
            }
            self.l1
                .get_cloned_remembered(near_key, l1_key, &self.clock, &self.counters)
        })
    }

    /// A fast-path read that bypasses the near cache (keys without a fingerprint).
    fn hit_l1_for_load<T: CacheValue + Clone>(
        &self,
        function: &'static Memoized,
        key: &str,
    ) -> Option<T> {
        if key.len() > self.max_key_bytes {
            return None;
        }
        let lookup = match self.l1.get_fresh::<T>(key, &self.clock, &self.counters) {
            Lookup::Hit(value) => Lookup::Hit(T::clone(&value)),
            Lookup::Miss => Lookup::Miss,
            Lookup::WrongType => Lookup::WrongType,
        };
        self.counted_fast_hit(function, lookup)
    }

    fn counted_fast_hit<T>(&self, function: &Memoized, lookup: Lookup<T>) -> Option<T> {
        match lookup {
            Lookup::Hit(value) => {
                self.counters.record(Tier::L1, Event::Hit(Op::GetOrLoad));
                function.hit();
                Some(value)
            }
            Lookup::Miss | Lookup::WrongType => None,
        }
    }
}
