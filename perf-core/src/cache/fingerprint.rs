//! Arguments' fingerprint: a short byte string that tells argument values apart within this
//! process, written by a minimal serde serializer at a few instructions a field.
//!
//! It keys the near cache; the L1 key stays the stable MessagePack encoding of `key.rs`. Each
//! value is written as a tag byte and its fixed-width bytes, strings and byte strings with their
//! length and sequences and maps with their length or an end marker, so that no fingerprint is a
//! prefix of another's: equal fingerprints mean equal serializations. Values whose fingerprint
//! does not fit in [`CAPACITY`] bytes get a [`WidePrint`] of up to [`WIDE_CAPACITY`], built in
//! memory; those past it get none, and are read from L1.

use std::fmt;

use serde::{Serialize, ser};

/// The longest fingerprint kept in registers, in bytes.
pub(crate) const CAPACITY: usize = 8 * WORDS;
const WORDS: usize = 5;
/// The longest [`WidePrint`], in bytes.
pub(crate) const WIDE_CAPACITY: usize = 8 * WIDE_WORDS;
const WIDE_WORDS: usize = 32;
// A wide print takes over where a print no longer fits.
const _: () = assert!(CAPACITY < WIDE_CAPACITY);

/// A fingerprint, its bytes packed little-endian into zero-padded words: built in registers,
/// compared and hashed a word at a time (byte-wise writes read back as wider loads would stall
/// the processor's store forwarding). No length is kept: the encoding is prefix-free, so two
/// fingerprints whose words are equal are of equal length.
///
/// Read a word at a time, and only where it was built: a copy through memory would be made
/// with wider loads, which the processor cannot serve from the narrower stores that just
/// wrote the words. [`of_arguments`](Self::of_arguments) inlines whole into the hit, so its
/// words stay in registers; the other constructors hand it to a closure by reference.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fingerprint([u64; WORDS]);

impl PartialEq for Fingerprint {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let differing = self
            .0
            .iter()
            .zip(&other.0)
            .fold(0, |acc, (a, b)| acc | (a ^ b));
        differing == 0
    }
}

impl Eq for Fingerprint {}

impl Fingerprint {
    /// Its words, to hash.
    #[inline(always)]
    pub(crate) fn words(&self) -> &[u64; WORDS] {
        &self.0
    }

    /// The first two words, if the others are zero: a fingerprint of at most 16 bytes, as
    /// one or two numbers or a short string give. For such arguments the compiler knows the
    /// other words are zero, and the check costs nothing.
    #[inline(always)]
    pub(crate) fn short(&self) -> Option<[u64; 2]> {
        let [first, second, rest @ ..] = self.0;
        (rest.iter().fold(0, |acc, word| acc | word) == 0).then_some([first, second])
    }

    /// `read` given the fingerprint of `value`, or `None` if it does not fit in [`CAPACITY`].
    #[cfg(test)]
    pub(crate) fn with<T: Serialize + ?Sized, R>(
        value: &T,
        read: impl FnOnce(Option<&Fingerprint>) -> R,
    ) -> R {
        let mut writer = Writer::<WORDS>::default();
        match value.serialize(&mut writer) {
            Ok(()) => read(Some(&Fingerprint(writer.print))),
            Err(Full) => read(None),
        }
    }

    /// The fingerprint of a call's arguments, or `None` if it does not fit in [`CAPACITY`];
    /// written element by element: the tuple's own `Serialize` is not inlined into the hit,
    /// and behind a call the fingerprint is written through memory rather than built in
    /// registers (10 of a hit's 75 ns). Returned, not handed to a closure: a closure called
    /// from both outcomes was left out of line (10k keys: 134-142 ns a hit, against 75-83).
    #[inline(always)]
    pub(crate) fn of_arguments<A: CallArguments>(arguments: &A) -> Option<Fingerprint> {
        let mut writer = Writer::<WORDS>::default();
        writer.elements(arguments).ok()?;
        Some(Fingerprint(writer.print))
    }

    /// [`of_arguments`](Self::of_arguments) for bytes taken whole (a key already made into a
    /// string), handed to `read`.
    #[inline]
    pub(crate) fn with_bytes<R>(bytes: &[u8], read: impl FnOnce(Option<&Fingerprint>) -> R) -> R {
        let mut writer = Writer::<WORDS>::default();
        match writer.counted(Tag::Bytes, bytes) {
            Ok(()) => read(Some(&Fingerprint(writer.print))),
            Err(Full) => read(None),
        }
    }

    #[cfg(test)]
    fn of<T: Serialize + ?Sized>(value: &T) -> Option<Self> {
        Self::with(value, |print| print.copied())
    }
}

/// The fingerprint of arguments past [`CAPACITY`] (a long string), up to [`WIDE_CAPACITY`]
/// bytes, written the same way into words on the stack and handed over as the words
/// written (the encoding is prefix-free, so equal words mean equal values). Its slots key
/// it by a copy of those words on the heap: a hit hashes and compares them in memory, which
/// still costs less than writing the L1 key, whose bytes go out in hex.
pub(crate) struct WidePrint;

impl WidePrint {
    /// `read` given the wide print of a call's arguments, or `None` if it does not fit in
    /// [`WIDE_CAPACITY`]. Handed by reference: returned, its 264 bytes were copied twice.
    #[inline]
    pub(crate) fn with_arguments<A: CallArguments, R>(
        arguments: &A,
        read: impl FnOnce(Option<&[u64]>) -> R,
    ) -> R {
        let mut writer = Writer::<WIDE_WORDS>::default();
        match writer.elements(arguments) {
            Ok(()) => read(Some(writer.words())),
            Err(Full) => read(None),
        }
    }

    /// [`with_arguments`](Self::with_arguments) for bytes taken whole.
    #[inline]
    pub(crate) fn with_bytes<R>(bytes: &[u8], read: impl FnOnce(Option<&[u64]>) -> R) -> R {
        let mut writer = Writer::<WIDE_WORDS>::default();
        match writer.counted(Tag::Bytes, bytes) {
            Ok(()) => read(Some(writer.words())),
            Err(Full) => read(None),
        }
    }
}

/// The arguments of a memoized call as `#[cache_result]` passes them: a tuple of up to 16
/// elements (as many as serde serializes), whose elements can be written one by one.
pub trait CallArguments: Serialize {
    /// Serializes each element into `tuple`, as the tuple's own `Serialize` does.
    fn serialize_elements<S: ser::SerializeTuple>(&self, tuple: &mut S) -> Result<(), S::Error>;
}

macro_rules! call_arguments {
    ($(($($element:ident $index:tt),*)),* $(,)?) => {$(
        impl<$($element: Serialize),*> CallArguments for ($($element,)*) {
            #[inline(always)]
            #[allow(unused_variables)]
            fn serialize_elements<S: ser::SerializeTuple>(
                &self,
                tuple: &mut S,
            ) -> Result<(), S::Error> {
                $(tuple.serialize_element(&self.$index)?;)*
                Ok(())
            }
        }
    )*};
}

call_arguments! {
    (),
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15),
}

/// The fingerprint did not fit, or the value's `Serialize` failed.
#[derive(Debug)]
pub(crate) struct Full;

impl fmt::Display for Full {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no fingerprint")
    }
}

impl std::error::Error for Full {}

impl ser::Error for Full {
    #[inline]
    fn custom<T: fmt::Display>(_: T) -> Self {
        Full
    }
}

/// Writes a fingerprint of up to `W` words.
struct Writer<const W: usize> {
    print: [u64; W],
    len: usize,
}

impl<const W: usize> Default for Writer<W> {
    #[inline(always)]
    fn default() -> Self {
        Self {
            print: [0; W],
            len: 0,
        }
    }
}

/// One tag per kind of value: values of different kinds never share a fingerprint.
#[repr(u8)]
enum Tag {
    Bool = 1,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    None,
    Some,
    Unit,
    UnitStruct,
    UnitVariant,
    NewtypeStruct,
    NewtypeVariant,
    Seq,
    Tuple,
    TupleStruct,
    TupleVariant,
    Map,
    Struct,
    StructVariant,
    /// Before the tag of a sequence or map of unknown length (instead of a length after it).
    Unsized,
    /// Before each element of a sequence or map of unknown length.
    Next,
    /// After the last element of a sequence or map of unknown length.
    End,
}

impl<const W: usize> Writer<W> {
    /// The words written to.
    #[inline]
    fn words(&self) -> &[u64] {
        &self.print[..self.len.div_ceil(8)]
    }

    /// The call's arguments, element by element: the tuple's own `Serialize` is not inlined
    /// into the hit (see [`Fingerprint::of_arguments`]).
    #[inline(always)]
    fn elements<A: CallArguments>(&mut self, arguments: &A) -> Result<(), Full> {
        let mut elements = Compound {
            writer: self,
            unknown_length: false,
        };
        arguments.serialize_elements(&mut elements)
    }

    /// Appends the low `width` bytes of `value` (whose higher bytes are zero).
    #[inline]
    fn push(&mut self, value: u64, width: usize) -> Result<(), Full> {
        let start = self.len;
        let end = start + width;
        if end > 8 * W {
            return Err(Full);
        }
        let (word, shift) = (start / 8, (start % 8) * 8);
        self.print[word] |= value << shift;
        if shift + width * 8 > 64 {
            self.print[word + 1] |= value >> (64 - shift);
        }
        self.len = end;
        Ok(())
    }

    #[inline]
    fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), Full> {
        if self.len + bytes.len() > 8 * W {
            return Err(Full);
        }
        // Whole words read as such: a copy of a chunk of unknown length into a word was a
        // call to `memcpy` for each (a fifth of a 64-byte argument's hit).
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word: [u8; 8] = chunk.try_into().map_err(|_| Full)?;
            self.push(u64::from_le_bytes(word), 8)?;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.push(u64::from_le_bytes(word), rest.len())?;
        }
        Ok(())
    }

    #[inline]
    fn tag(&mut self, tag: Tag) -> Result<(), Full> {
        self.push(tag as u64, 1)
    }

    /// A tag and a value of `width` bytes.
    #[inline]
    fn tagged(&mut self, tag: Tag, value: u64, width: usize) -> Result<(), Full> {
        self.tag(tag)?;
        self.push(value, width)
    }

    #[inline]
    fn length(&mut self, len: usize) -> Result<(), Full> {
        // Longer than the whole fingerprint can hold: it would not fit anyway.
        let len = u8::try_from(len).map_err(|_| Full)?;
        self.push(u64::from(len), 1)
    }

    #[inline]
    fn counted(&mut self, tag: Tag, bytes: &[u8]) -> Result<(), Full> {
        self.tag(tag)?;
        self.length(bytes.len())?;
        self.push_bytes(bytes)
    }

    #[inline]
    fn compound(&mut self, tag: Tag, len: Option<usize>) -> Result<Compound<'_, W>, Full> {
        match len {
            Some(len) => {
                self.tag(tag)?;
                self.length(len)?;
            }
            None => {
                self.tag(Tag::Unsized)?;
                self.tag(tag)?;
            }
        }
        Ok(Compound {
            writer: self,
            unknown_length: len.is_none(),
        })
    }
}

macro_rules! fixed_width {
    ($($method:ident: $ty:ty => $tag:ident, $to_u64:expr;)*) => {
        $(
            #[inline]
            fn $method(self, v: $ty) -> Result<(), Full> {
                let to_u64: fn($ty) -> u64 = $to_u64;
                self.tagged(Tag::$tag, to_u64(v), size_of::<$ty>())
            }
        )*
    };
}

impl<'a, const W: usize> ser::Serializer for &'a mut Writer<W> {
    type Ok = ();
    type Error = Full;
    type SerializeSeq = Compound<'a, W>;
    type SerializeTuple = Compound<'a, W>;
    type SerializeTupleStruct = Compound<'a, W>;
    type SerializeTupleVariant = Compound<'a, W>;
    type SerializeMap = Compound<'a, W>;
    type SerializeStruct = Compound<'a, W>;
    type SerializeStructVariant = Compound<'a, W>;

    // Signed values keep their two's-complement bytes (their width's, not a u64's).
    fixed_width! {
        serialize_i8: i8 => I8, |v| u64::from(v as u8);
        serialize_i16: i16 => I16, |v| u64::from(v as u16);
        serialize_i32: i32 => I32, |v| u64::from(v as u32);
        serialize_i64: i64 => I64, |v| v as u64;
        serialize_u8: u8 => U8, u64::from;
        serialize_u16: u16 => U16, u64::from;
        serialize_u32: u32 => U32, u64::from;
        serialize_u64: u64 => U64, |v| v;
    }

    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), Full> {
        self.tag(Tag::I128)?;
        self.push_bytes(&v.to_le_bytes())
    }

    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), Full> {
        self.tag(Tag::U128)?;
        self.push_bytes(&v.to_le_bytes())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), Full> {
        self.tagged(Tag::F32, u64::from(v.to_bits()), 4)
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), Full> {
        self.tagged(Tag::F64, v.to_bits(), 8)
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Full> {
        self.tagged(Tag::Bool, u64::from(v), 1)
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), Full> {
        self.tagged(Tag::Char, u64::from(v), 4)
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Full> {
        self.counted(Tag::Str, v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Full> {
        self.counted(Tag::Bytes, v)
    }

    #[inline]
    fn serialize_none(self) -> Result<(), Full> {
        self.tag(Tag::None)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Full> {
        self.tag(Tag::Some)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), Full> {
        self.tag(Tag::Unit)
    }

    // Type and field names are left out: a call site's arguments have fixed types.
    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Full> {
        self.tag(Tag::UnitStruct)
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), Full> {
        self.tagged(Tag::UnitVariant, u64::from(index), 4)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.tag(Tag::NewtypeStruct)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.tagged(Tag::NewtypeVariant, u64::from(index), 4)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, W>, Full> {
        self.compound(Tag::Seq, len)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, W>, Full> {
        self.compound(Tag::Tuple, Some(len))
    }

    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a, W>, Full> {
        self.compound(Tag::TupleStruct, Some(len))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'a, W>, Full> {
        self.tagged(Tag::TupleVariant, u64::from(index), 4)?;
        self.compound(Tag::Tuple, Some(len))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, W>, Full> {
        self.compound(Tag::Map, len)
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a, W>, Full> {
        self.compound(Tag::Struct, Some(len))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'a, W>, Full> {
        self.tagged(Tag::StructVariant, u64::from(index), 4)?;
        self.compound(Tag::Struct, Some(len))
    }
}

pub(crate) struct Compound<'a, const W: usize> {
    writer: &'a mut Writer<W>,
    unknown_length: bool,
}

impl<const W: usize> Compound<'_, W> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        if self.unknown_length {
            self.writer.tag(Tag::Next)?;
        }
        value.serialize(&mut *self.writer)
    }

    #[inline]
    fn end(self) -> Result<(), Full> {
        if self.unknown_length {
            self.writer.tag(Tag::End)?;
        }
        Ok(())
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(
            impl<const W: usize> ser::$trait for Compound<'_, W> {
                type Ok = ();
                type Error = Full;

                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
                    self.element(value)
                }

                #[inline]
                fn end(self) -> Result<(), Full> {
                    Compound::end(self)
                }
            }
        )*
    };
}

compound! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
}

impl<const W: usize> ser::SerializeMap for Compound<'_, W> {
    type Ok = ();
    type Error = Full;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Full> {
        self.element(key)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        value.serialize(&mut *self.writer)
    }

    #[inline]
    fn end(self) -> Result<(), Full> {
        Compound::end(self)
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(
            impl<const W: usize> ser::$trait for Compound<'_, W> {
                type Ok = ();
                type Error = Full;

                #[inline]
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    _: &'static str,
                    value: &T,
                ) -> Result<(), Full> {
                    self.element(value)
                }

                #[inline]
                fn skip_field(&mut self, _: &'static str) -> Result<(), Full> {
                    // Fields skipped conditionally would make equal-looking prints ambiguous.
                    self.writer.tag(Tag::Unit)
                }

                #[inline]
                fn end(self) -> Result<(), Full> {
                    Compound::end(self)
                }
            }
        )*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Placement<'a> {
        id: u32,
        slot: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u16>,
    }

    #[test]
    fn values_of_different_shapes_differ() {
        let prints = [
            Fingerprint::of(&(1u64,)),
            Fingerprint::of(&(1u32,)),
            Fingerprint::of(&(1i64,)),
            Fingerprint::of(&("ab", "c")),
            Fingerprint::of(&("a", "bc")),
            Fingerprint::of(&(Some(1u8),)),
            Fingerprint::of(&(None::<u8>, 1u8)),
            Fingerprint::of(&vec![vec![1u8], vec![]]),
            Fingerprint::of(&vec![vec![], vec![1u8]]),
            Fingerprint::of(&Placement {
                id: 1,
                slot: "top",
                size: None,
            }),
            Fingerprint::of(&Placement {
                id: 1,
                slot: "top",
                size: Some(0),
            }),
        ];
        for (i, a) in prints.iter().enumerate() {
            assert!(a.is_some(), "print {i} fits");
            for (j, b) in prints.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "prints {i} and {j} collide");
            }
        }
    }

    #[test]
    fn too_long_values_have_no_fingerprint() {
        assert!(Fingerprint::of(&"x".repeat(CAPACITY)).is_none());
        assert!(Fingerprint::of(&"x".repeat(CAPACITY - 3)).is_some());
        assert!(Fingerprint::with_bytes(&[0; CAPACITY + 1], |print| print.is_none()));
        assert!(WidePrint::with_bytes(&[0; CAPACITY + 1], |print| print.is_some()));
        let wide = |s: &str| WidePrint::with_arguments(&(s,), |print| print.map(<[u64]>::to_vec));
        assert_eq!(
            wide(&"x".repeat(CAPACITY)).map(|words| words.len()),
            Some(6)
        );
        // A call's print has its elements' tags and lengths, not the tuple's.
        assert!(wide(&"x".repeat(WIDE_CAPACITY - 2)).is_some());
        assert!(wide(&"x".repeat(WIDE_CAPACITY - 1)).is_none());
    }

    proptest! {
        /// Equal prints only for equal values (checked through their MessagePack encoding).
        #[test]
        fn fingerprints_are_injective(
            a in prop::collection::btree_map(any::<u16>(), ".{0,3}", 0..3),
            b in prop::collection::btree_map(any::<u16>(), ".{0,3}", 0..3),
            x in any::<Option<i32>>(),
            y in any::<Option<i32>>(),
        ) {
            let left = (&a, x);
            let right = (&b, y);
            let (Some(pa), Some(pb)) = (Fingerprint::of(&left), Fingerprint::of(&right)) else {
                return Ok(());
            };
            let same_value = rmp_serde::to_vec(&left).ok() == rmp_serde::to_vec(&right).ok();
            prop_assert_eq!(pa == pb, same_value);
        }

        /// Wide prints too, whose words are compared as a slice of their own length.
        #[test]
        fn wide_prints_are_injective(
            a in ".{20,70}",
            other in ".{0,70}",
            same in any::<bool>(),
            x in any::<u8>(),
            y in any::<u8>(),
        ) {
            let b = if same { a.clone() } else { other };
            let print = |s: &String, n: u8| WidePrint::with_arguments(&(s, n), |p| p.map(<[u64]>::to_vec));
            let (Some(pa), Some(pb)) = (print(&a, x), print(&b, y)) else {
                return Ok(());
            };
            prop_assert_eq!(pa == pb, a == b && x == y);
        }

        #[test]
        fn sequences_of_unknown_length_are_delimited(
            a in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..4),
            b in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..4),
        ) {
            let left = Unsized(&a);
            let right = Unsized(&b);
            if let (Some(pa), Some(pb)) = (Fingerprint::of(&left), Fingerprint::of(&right)) {
                prop_assert_eq!(pa == pb, a == b);
            }
        }
    }

    /// Serializes nested vectors as sequences of unknown length.
    struct Unsized<'a>(&'a Vec<Vec<u8>>);

    impl Serialize for Unsized<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut outer = serializer.serialize_seq(None)?;
            for inner in self.0 {
                outer.serialize_element(&Inner(inner))?;
            }
            outer.end()
        }
    }

    struct Inner<'a>(&'a Vec<u8>);

    impl Serialize for Inner<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = serializer.serialize_seq(None)?;
            for byte in self.0 {
                seq.serialize_element(byte)?;
            }
            seq.end()
        }
    }

    /// A map's fingerprint is that of its entries in the order it yields them: the same
    /// entries in the same order print alike whatever the map type, and in another order they
    /// print differently (so an unordered map's arguments may miss, never collide).
    #[test]
    fn maps_are_fingerprinted_in_their_iteration_order() {
        let ordered: BTreeMap<u8, u8> = [(1, 2), (3, 4)].into();
        let print = Fingerprint::of(&ordered).expect("fits");
        assert_eq!(Fingerprint::of(&Entries(&[(1, 2), (3, 4)])), Some(print));
        assert_ne!(Fingerprint::of(&Entries(&[(3, 4), (1, 2)])), Some(print));
    }

    /// Serializes pairs as a map, in the slice's order.
    struct Entries<'a>(&'a [(u8, u8)]);

    impl Serialize for Entries<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
        }
    }
}
