//! ERR packets: the ones corelay writes (always with a code from [`super::code`]) and the
//! servers' ones it reads or passes on.

use super::code::Code;
use super::packet::{begin_packet, finish_packet, Reader};
use super::ProtocolError;

/// Appends an ERR packet.
pub fn write_err(out: &mut Vec<u8>, seq: u8, code: Code, message: &str) {
    put_err(out, seq, code.number, code.state, message);
}

fn put_err(out: &mut Vec<u8>, seq: u8, number: u16, state: &str, message: &str) {
    let at = begin_packet(out);
    out.push(0xFF);
    out.extend_from_slice(&number.to_le_bytes());
    out.push(b'#');
    let state = state.as_bytes();
    out.extend_from_slice(&state[..5.min(state.len())]);
    // Keep proxy-made packets well under one physical packet.
    let msg = message.as_bytes();
    out.extend_from_slice(&msg[..msg.len().min(0xFFFF)]);
    finish_packet(out, at, seq);
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sql_state: String,
    pub message: String,
}

impl ErrPacket {
    pub fn parse(payload: &[u8]) -> Result<ErrPacket, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8("err marker")? != 0xFF {
            return Err(ProtocolError::Malformed("ERR packet does not start with 0xFF"));
        }
        let code = r.u16("error code")?;
        let mut sql_state = String::from("HY000");
        let rest = r.rest();
        let message = if rest.first() == Some(&b'#') && rest.len() >= 6 {
            sql_state = String::from_utf8_lossy(&rest[1..6]).into_owned();
            &rest[6..]
        } else {
            rest
        };
        Ok(ErrPacket { code, sql_state, message: String::from_utf8_lossy(message).into_owned() })
    }

    /// Appends this error as a packet of sequence id `seq` (a server's error passed on to
    /// a client as it was).
    pub fn write(&self, out: &mut Vec<u8>, seq: u8) {
        put_err(out, seq, self.code, &self.sql_state, &self.message);
    }

    /// An error corelay reports in the server's form (for code paths that carry either).
    pub fn new(code: Code, message: impl Into<String>) -> ErrPacket {
        ErrPacket { code: code.number, sql_state: code.state.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;

    #[test]
    fn err_packet_round_trip() {
        let mut e = Vec::new();
        write_err(&mut e, 2, code::ACCESS_DENIED, "Access denied");
        let p = ErrPacket::parse(&e[4..]).unwrap();
        assert_eq!((p.code, p.sql_state.as_str(), p.message.as_str()), (1045, "28000", "Access denied"));
        let mut again = Vec::new();
        p.write(&mut again, 2);
        assert_eq!(again, e, "a server's error is passed on byte for byte");
    }
}
