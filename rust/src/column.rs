//! Zero-copy typed views over (possibly chunked) Arrow columns.
//!
//! `ppl` is read straight out of the Arrow buffers (never concatenated or copied as a whole); integer
//! columns of any width are widened to `u64` one block (8192 rows) at a time. A column that holds
//! nulls is accepted only if no *used* row is null (a `rows` mapping may skip them); see `corpus.rs`.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow_schema::DataType;

use crate::error::{invalid, Result};

/// Chunk start offsets: `starts[k]` is the global index of chunk k's first element; the last entry is the length.
#[derive(Clone, Debug, Default)]
struct Layout {
    starts: Vec<usize>,
}

impl Layout {
    fn new(lens: impl Iterator<Item = usize>) -> Self {
        let mut starts = vec![0usize];
        for l in lens {
            let last = *starts.last().unwrap_or(&0);
            starts.push(last + l);
        }
        Layout { starts }
    }
    fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }
    fn n_chunks(&self) -> usize {
        self.starts.len() - 1
    }
    /// (chunk, offset inside chunk) of global index `i < len`.
    #[inline]
    fn locate(&self, i: usize) -> (usize, usize) {
        if self.starts.len() == 2 {
            return (0, i);
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        (k, i - self.starts[k])
    }
}

fn first_null(nulls: &[Option<NullBuffer>], layout: &Layout) -> Option<usize> {
    nulls.iter().enumerate().find_map(|(k, nb)| {
        nb.as_ref().and_then(|nb| nb.iter().position(|valid| !valid).map(|p| layout.starts[k] + p))
    })
}

/// A float64 column (`ppl`).
#[derive(Clone, Debug)]
pub struct F64Column {
    pub name: String,
    chunks: Vec<ScalarBuffer<f64>>,
    nulls: Vec<Option<NullBuffer>>,
    layout: Layout,
}

impl F64Column {
    /// Wrap Arrow arrays without copying (Float64). Float32/Float16 are widened (a copy) for convenience.
    pub fn from_arrays(name: &str, arrays: &[ArrayRef]) -> Result<Self> {
        let mut chunks = Vec::with_capacity(arrays.len());
        let mut nulls = Vec::with_capacity(arrays.len());
        for a in arrays.iter().filter(|a| !a.is_empty()) {
            let a: ArrayRef = match a.data_type() {
                DataType::Float64 => a.clone(),
                DataType::Float32 | DataType::Float16 => arrow_cast::cast(a, &DataType::Float64)
                    .map_err(|e| invalid(format!("column '{name}': cannot widen to float64: {e}")))?,
                dt => {
                    return Err(invalid(format!(
                        "column '{name}' must be float64 (perplexity per chunk), got {dt}"
                    )))
                }
            };
            let p = a.as_primitive::<Float64Type>();
            chunks.push(p.values().clone());
            nulls.push(p.nulls().filter(|n| n.null_count() > 0).cloned());
        }
        let layout = Layout::new(chunks.iter().map(|c| c.len()));
        Ok(F64Column { name: name.to_string(), chunks, nulls, layout })
    }

    /// A column over one plain vector (tests and Rust users).
    pub fn from_vec(name: &str, v: Vec<f64>) -> Self {
        let layout = Layout::new(std::iter::once(v.len()));
        F64Column { name: name.to_string(), chunks: vec![ScalarBuffer::from(v)], nulls: vec![None], layout }
    }

    pub fn len(&self) -> usize {
        self.layout.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn n_chunks(&self) -> usize {
        self.layout.n_chunks()
    }
    pub fn has_nulls(&self) -> bool {
        self.nulls.iter().any(|n| n.is_some())
    }
    pub fn first_null(&self) -> Option<usize> {
        first_null(&self.nulls, &self.layout)
    }
    pub fn is_null(&self, i: usize) -> bool {
        let (k, o) = self.layout.locate(i);
        self.nulls[k].as_ref().is_some_and(|n| n.is_null(o))
    }
    /// Address of the first value buffer (for zero-copy checks).
    pub fn buffer_addresses(&self) -> Vec<usize> {
        self.chunks.iter().map(|c| c.as_ptr() as usize).collect()
    }

    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        let (k, o) = self.layout.locate(i);
        self.chunks[k][o]
    }

    /// The slice `[start, start+len)` when it lies inside one Arrow chunk (no copy).
    #[inline]
    pub fn contiguous(&self, start: usize, len: usize) -> Option<&[f64]> {
        let (k, o) = self.layout.locate(start);
        let c = &self.chunks[k];
        (o + len <= c.len()).then(|| &c[o..o + len])
    }

    /// Copy `[start, start+len)` (spanning chunks) into `out` (a reused block buffer).
    pub fn copy_range(&self, start: usize, len: usize, out: &mut Vec<f64>) {
        out.clear();
        let mut i = start;
        while i < start + len {
            let (k, o) = self.layout.locate(i);
            let take = (self.chunks[k].len() - o).min(start + len - i);
            out.extend_from_slice(&self.chunks[k][o..o + take]);
            i += take;
        }
    }

    /// Gather values at physical indices (already range-checked).
    pub fn gather(&self, phys: &[u64], out: &mut Vec<f64>) {
        out.clear();
        if self.chunks.len() == 1 {
            let c = &self.chunks[0];
            out.extend(phys.iter().map(|&p| c[p as usize]));
        } else {
            out.extend(phys.iter().map(|&p| self.get(p as usize)));
        }
    }
}

/// Integer element types accepted for tokens, chunk ids, row mappings and selections.
pub trait IntValue: Copy + Send + Sync {
    fn to_i128(self) -> i128;
    /// Negative values clamp to 0 (callers validate ranges before relying on the value).
    fn to_u64_clamped(self) -> u64;
}

macro_rules! int_value {
    (signed: $($t:ty),*) => {$(
        impl IntValue for $t {
            #[inline] fn to_i128(self) -> i128 { self as i128 }
            #[inline] fn to_u64_clamped(self) -> u64 { self.max(0) as u64 }
        }
    )*};
    (unsigned: $($t:ty),*) => {$(
        impl IntValue for $t {
            #[inline] fn to_i128(self) -> i128 { self as i128 }
            #[inline] fn to_u64_clamped(self) -> u64 { self as u64 }
        }
    )*};
}
int_value!(signed: i8, i16, i32, i64);
int_value!(unsigned: u8, u16, u32, u64);

#[derive(Clone, Debug)]
enum IntChunk {
    I8(ScalarBuffer<i8>),
    I16(ScalarBuffer<i16>),
    I32(ScalarBuffer<i32>),
    I64(ScalarBuffer<i64>),
    U8(ScalarBuffer<u8>),
    U16(ScalarBuffer<u16>),
    U32(ScalarBuffer<u32>),
    U64(ScalarBuffer<u64>),
}

macro_rules! with_chunk {
    ($c:expr, $b:ident => $e:expr) => {
        match $c {
            IntChunk::I8($b) => $e,
            IntChunk::I16($b) => $e,
            IntChunk::I32($b) => $e,
            IntChunk::I64($b) => $e,
            IntChunk::U8($b) => $e,
            IntChunk::U16($b) => $e,
            IntChunk::U32($b) => $e,
            IntChunk::U64($b) => $e,
        }
    };
}

impl IntChunk {
    fn len(&self) -> usize {
        with_chunk!(self, b => b.len())
    }
}

/// An integer column of any width (tokens, chunk_id, rows, selection indices); zero-copy.
#[derive(Clone, Debug)]
pub struct IntColumn {
    pub name: String,
    chunks: Vec<IntChunk>,
    nulls: Vec<Option<NullBuffer>>,
    layout: Layout,
}

impl IntColumn {
    pub fn from_arrays(name: &str, arrays: &[ArrayRef]) -> Result<Self> {
        let mut chunks = Vec::with_capacity(arrays.len());
        let mut nulls = Vec::with_capacity(arrays.len());
        for a in arrays.iter().filter(|a| !a.is_empty()) {
            let c = match a.data_type() {
                DataType::Int8 => IntChunk::I8(a.as_primitive::<Int8Type>().values().clone()),
                DataType::Int16 => IntChunk::I16(a.as_primitive::<Int16Type>().values().clone()),
                DataType::Int32 => IntChunk::I32(a.as_primitive::<Int32Type>().values().clone()),
                DataType::Int64 => IntChunk::I64(a.as_primitive::<Int64Type>().values().clone()),
                DataType::UInt8 => IntChunk::U8(a.as_primitive::<UInt8Type>().values().clone()),
                DataType::UInt16 => IntChunk::U16(a.as_primitive::<UInt16Type>().values().clone()),
                DataType::UInt32 => IntChunk::U32(a.as_primitive::<UInt32Type>().values().clone()),
                DataType::UInt64 => IntChunk::U64(a.as_primitive::<UInt64Type>().values().clone()),
                dt => return Err(invalid(format!("column '{name}' must have an integer type, got {dt}"))),
            };
            chunks.push(c);
            nulls.push(a.nulls().filter(|n| n.null_count() > 0).cloned());
        }
        let layout = Layout::new(chunks.iter().map(|c| c.len()));
        Ok(IntColumn { name: name.to_string(), chunks, nulls, layout })
    }

    pub fn from_vec_u64(name: &str, v: Vec<u64>) -> Self {
        let layout = Layout::new(std::iter::once(v.len()));
        IntColumn { name: name.to_string(), chunks: vec![IntChunk::U64(ScalarBuffer::from(v))], nulls: vec![None], layout }
    }

    pub fn from_vec_i64(name: &str, v: Vec<i64>) -> Self {
        let layout = Layout::new(std::iter::once(v.len()));
        IntColumn { name: name.to_string(), chunks: vec![IntChunk::I64(ScalarBuffer::from(v))], nulls: vec![None], layout }
    }

    pub fn len(&self) -> usize {
        self.layout.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn has_nulls(&self) -> bool {
        self.nulls.iter().any(|n| n.is_some())
    }
    pub fn first_null(&self) -> Option<usize> {
        first_null(&self.nulls, &self.layout)
    }
    pub fn is_null(&self, i: usize) -> bool {
        let (k, o) = self.layout.locate(i);
        self.nulls[k].as_ref().is_some_and(|n| n.is_null(o))
    }

    #[inline]
    pub fn get_i128(&self, i: usize) -> i128 {
        let (k, o) = self.layout.locate(i);
        with_chunk!(&self.chunks[k], b => b[o].to_i128())
    }

    #[inline]
    pub fn get_u64(&self, i: usize) -> u64 {
        let (k, o) = self.layout.locate(i);
        with_chunk!(&self.chunks[k], b => b[o].to_u64_clamped())
    }

    /// Widen `[start, start+len)` into `out` (negative values clamp to 0).
    pub fn copy_range_u64(&self, start: usize, len: usize, out: &mut Vec<u64>) {
        out.clear();
        let mut i = start;
        while i < start + len {
            let (k, o) = self.layout.locate(i);
            let c = &self.chunks[k];
            let take = (c.len() - o).min(start + len - i);
            with_chunk!(c, b => out.extend(b[o..o + take].iter().map(|v| v.to_u64_clamped())));
            i += take;
        }
    }

    /// Widen the values at physical indices `phys` into `out`.
    pub fn gather_u64(&self, phys: &[u64], out: &mut Vec<u64>) {
        out.clear();
        if self.chunks.len() == 1 {
            with_chunk!(&self.chunks[0], b => out.extend(phys.iter().map(|&p| b[p as usize].to_u64_clamped())));
        } else {
            out.extend(phys.iter().map(|&p| self.get_u64(p as usize)));
        }
    }

    /// First index whose value lies outside `[lo, hi]`, with that value.
    pub fn first_outside(&self, lo: i128, hi: i128) -> Option<(usize, i128)> {
        use rayon::prelude::*;
        self.chunks.iter().enumerate().find_map(|(k, c)| {
            with_chunk!(c, b => {
                b.par_iter()
                    .position_first(|v| { let v = v.to_i128(); v < lo || v > hi })
                    .map(|p| (self.layout.starts[k] + p, b[p].to_i128()))
            })
        })
    }
}

/// A boolean mask column.
#[derive(Clone, Debug)]
pub struct BoolColumn {
    pub name: String,
    chunks: Vec<BooleanBuffer>,
    nulls: Vec<Option<NullBuffer>>,
    layout: Layout,
}

impl BoolColumn {
    pub fn from_arrays(name: &str, arrays: &[ArrayRef]) -> Result<Self> {
        let mut chunks = Vec::new();
        let mut nulls = Vec::new();
        for a in arrays.iter().filter(|a| !a.is_empty()) {
            if a.data_type() != &DataType::Boolean {
                return Err(invalid(format!("column '{name}' must be boolean, got {}", a.data_type())));
            }
            let b = a.as_boolean();
            chunks.push(b.values().clone());
            nulls.push(b.nulls().filter(|n| n.null_count() > 0).cloned());
        }
        let layout = Layout::new(chunks.iter().map(|c| c.len()));
        let col = BoolColumn { name: name.to_string(), chunks, nulls, layout };
        if let Some(i) = col.first_null() {
            return Err(invalid(format!("'{name}' has a null at position {i}; a boolean mask must not contain nulls")));
        }
        Ok(col)
    }

    pub fn from_vec(name: &str, v: &[bool]) -> Self {
        let b = BooleanBuffer::from(v.to_vec());
        let layout = Layout::new(std::iter::once(b.len()));
        BoolColumn { name: name.to_string(), chunks: vec![b], nulls: vec![None], layout }
    }

    pub fn len(&self) -> usize {
        self.layout.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn first_null(&self) -> Option<usize> {
        first_null(&self.nulls, &self.layout)
    }

    /// Indices of the set positions, ascending.
    pub fn set_indices(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (k, c) in self.chunks.iter().enumerate() {
            let base = self.layout.starts[k] as u64;
            out.extend(c.set_indices().map(|i| base + i as u64));
        }
        out
    }
}
