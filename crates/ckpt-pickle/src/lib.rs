//! A pickle virtual machine that never imports or calls anything.
//!
//! [`decode`] turns the bytes of a pickle (protocols 0–5) into a [`Pickle`]: an arena of
//! [`Value`]s. Globals stay names ([`Global`]), calls stay descriptions ([`Object`] with its
//! callee, arguments and BUILD state). Nothing in the input can make this code import a module,
//! run a function or allocate more than the input justifies: every length is checked against the
//! bytes actually present, and [`Limits`] bounds the stack, memo, arena and containers.
//!
//! The memo holds *references*: a dict memoized before it is filled and fetched twice is one
//! value, filled once, seen at both places — as CPython does it.

mod error;
pub mod opcode;
mod value;
mod vm;
pub mod write;

pub use error::{Error, ErrorKind};
pub use opcode::{Arg, Opcode, find_stop};
pub use value::{
    BigInt, Construct, Global, GlobalSite, Object, Pickle, Value, ValueId, normalize_module,
};
pub use vm::{FrameMode, Limits, decode, decode_partial, decode_with};
