//! Small facts every layer needs and nothing in particular owns: wall-clock time and its
//! formatting, facts about the host (online CPUs, page size, this process's memory), hex
//! text, text escaped for HTML and XML (`markup`), and the one-waker slot that single-threaded futures park in.
//!
//! Nothing here knows about MySQL, configuration or the runtime.

pub mod hex;
pub mod host;
pub mod markup;
pub mod time;
pub mod waker;
