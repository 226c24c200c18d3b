use std::fmt;

/// What went wrong while decoding, without the location (see [`Error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("truncated")]
    Truncated,
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("{opcode} needs {needed} value(s) on the stack")]
    StackUnderflow { opcode: &'static str, needed: usize },
    #[error("{opcode} without a MARK")]
    NoMark { opcode: &'static str },
    #[error("memo entry {0} read before it was written")]
    MemoMissing(u64),
    #[error("{what} limit of {limit} exceeded")]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("{opcode} has an invalid length {length}")]
    BadLength { opcode: &'static str, length: i64 },
    #[error("{opcode} claims {claimed} bytes but only {available} remain")]
    LengthPastEnd {
        opcode: &'static str,
        claimed: u64,
        available: u64,
    },
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("{opcode} has a malformed argument: {detail}")]
    Malformed {
        opcode: &'static str,
        detail: String,
    },
    #[error("{opcode} expects {expected}, found {found}")]
    WrongType {
        opcode: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("STOP with an empty stack")]
    EmptyStop,
}

/// A decoding error and the byte offset (within the pickle) of the opcode that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: u64,
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for Error {}
