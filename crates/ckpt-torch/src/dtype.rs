//! Tensor element types: torch's names, sizes, and the legacy typed-storage classes that name
//! them in pickles (`torch.FloatStorage` …).

/// A torch dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    F8E8M0FNU,
    F4E2M1FNx2,
    C32,
    C64,
    C128,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    QInt8,
    QUInt8,
    QInt32,
    QUInt4x2,
    QUInt2x4,
    Bits8,
    Bits16,
    Bits1x8,
    Bits2x4,
    Bits4x2,
    BC32,
}

use DType::*;

/// (dtype, torch name, element size in bytes, legacy storage class name if any)
const TABLE: &[(DType, &str, u64, Option<&str>)] = &[
    (F64, "float64", 8, Some("DoubleStorage")),
    (F32, "float32", 4, Some("FloatStorage")),
    (F16, "float16", 2, Some("HalfStorage")),
    (BF16, "bfloat16", 2, Some("BFloat16Storage")),
    (F8E4M3FN, "float8_e4m3fn", 1, None),
    (F8E4M3FNUZ, "float8_e4m3fnuz", 1, None),
    (F8E5M2, "float8_e5m2", 1, None),
    (F8E5M2FNUZ, "float8_e5m2fnuz", 1, None),
    (F8E8M0FNU, "float8_e8m0fnu", 1, None),
    (F4E2M1FNx2, "float4_e2m1fn_x2", 1, None),
    (C32, "complex32", 4, Some("ComplexHalfStorage")),
    (C64, "complex64", 8, Some("ComplexFloatStorage")),
    (C128, "complex128", 16, Some("ComplexDoubleStorage")),
    (I8, "int8", 1, Some("CharStorage")),
    (I16, "int16", 2, Some("ShortStorage")),
    (I32, "int32", 4, Some("IntStorage")),
    (I64, "int64", 8, Some("LongStorage")),
    (U8, "uint8", 1, Some("ByteStorage")),
    (U16, "uint16", 2, None),
    (U32, "uint32", 4, None),
    (U64, "uint64", 8, None),
    (Bool, "bool", 1, Some("BoolStorage")),
    (QInt8, "qint8", 1, Some("QInt8Storage")),
    (QUInt8, "quint8", 1, Some("QUInt8Storage")),
    (QInt32, "qint32", 4, Some("QInt32Storage")),
    (QUInt4x2, "quint4x2", 1, Some("QUInt4x2Storage")),
    (QUInt2x4, "quint2x4", 1, Some("QUInt2x4Storage")),
    (Bits8, "bits8", 1, None),
    (Bits16, "bits16", 2, None),
    (Bits1x8, "bits1x8", 1, None),
    (Bits2x4, "bits2x4", 1, None),
    (Bits4x2, "bits4x2", 1, None),
    (BC32, "bcomplex32", 4, None),
];

/// Aliases torch accepts as attribute names (`torch.float` is float32, `torch.half` float16 …).
const ALIASES: &[(&str, DType)] = &[
    ("float", F32),
    ("double", F64),
    ("half", F16),
    ("cfloat", C64),
    ("cdouble", C128),
    ("chalf", C32),
    ("short", I16),
    ("int", I32),
    ("long", I64),
];

impl DType {
    /// torch's name (`str(dtype)` without `torch.`).
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .map(|r| r.1)
            .unwrap_or("unknown")
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        TABLE.iter().find(|r| r.0 == self).map(|r| r.2).unwrap_or(1)
    }

    /// From torch's name or alias (`float32`, `float`, `bfloat16` …).
    pub fn from_name(name: &str) -> Option<DType> {
        TABLE
            .iter()
            .find(|r| r.1 == name)
            .map(|r| r.0)
            .or_else(|| ALIASES.iter().find(|a| a.0 == name).map(|a| a.1))
    }

    /// From a legacy storage class name (`FloatStorage`, also `cuda.FloatStorage`'s last part).
    pub fn from_storage_class(name: &str) -> Option<DType> {
        TABLE.iter().find(|r| r.3 == Some(name)).map(|r| r.0)
    }

    /// From a safetensors dtype code (`F32`, `BF16`, `F8_E4M3` …).
    pub fn from_safetensors(code: &str) -> Option<DType> {
        Some(match code {
            "F64" => F64,
            "F32" => F32,
            "F16" => F16,
            "BF16" => BF16,
            "F8_E4M3" => F8E4M3FN,
            "F8_E5M2" => F8E5M2,
            "F8_E8M0" => F8E8M0FNU,
            "F4" => F4E2M1FNx2,
            "C64" => C64,
            "I8" => I8,
            "I16" => I16,
            "I32" => I32,
            "I64" => I64,
            "U8" => U8,
            "U16" => U16,
            "U32" => U32,
            "U64" => U64,
            "BOOL" => Bool,
            _ => return None,
        })
    }

    /// Sub-byte quantized types pack several elements into one byte.
    pub fn elems_per_byte(self) -> u64 {
        match self {
            QUInt4x2 => 2,
            QUInt2x4 => 4,
            _ => 1,
        }
    }

    /// Every dtype, for tests and tables.
    pub fn all() -> impl Iterator<Item = DType> {
        TABLE.iter().map(|r| r.0)
    }

    /// Size of the unit that must be byte-swapped when the file is big-endian (complex numbers
    /// swap each half).
    pub fn swap_unit(self) -> u64 {
        match self {
            C32 | C64 | C128 | BC32 => self.size() / 2,
            _ => self.size(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::all() {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("half"), Some(F16));
        assert_eq!(DType::from_storage_class("BFloat16Storage"), Some(BF16));
        assert_eq!(DType::from_storage_class("UntypedStorage"), None);
    }
}
