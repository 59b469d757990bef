//! A fixed-length bit set in the wire format of BEP 3: bit 0 is the high bit of byte 0.
//! Used for "which pieces we have" and, later, for peers' `bitfield` messages.

/// A set of piece indices `0..len`, stored as the BEP 3 `bitfield` message payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// An empty set of `len` bits.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// A full set of `len` bits.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Reads the wire form. `None` if `bytes` is not exactly `ceil(len / 8)` long or any
    /// spare bit past `len` is set (BEP 3: "spare bits at the end are set to zero").
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if let Some(&last) = bytes.last() {
            if spare > 0 && last & ((1u8 << spare) - 1) != 0 {
                return None;
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// Number of bits.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when `len` is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bits set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Every bit is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Bit `i` (false when out of range).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; out-of-range indices are ignored.
    pub fn set(&mut self, i: u32) {
        if i < self.len && !self.get(i) {
            self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
            self.ones += 1;
        }
    }

    /// Clears bit `i`; out-of-range indices are ignored.
    pub fn clear(&mut self, i: u32) {
        if self.get(i) {
            self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indices of set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(move |&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        b.set(9);
        b.set(10); // out of range: ignored
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(b.get(9) && !b.get(8) && !b.get(10));
        b.clear(0);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![9]);
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10).unwrap().count(), 2);
        assert!(
            Bitfield::from_bytes(&[0x80, 0x20], 10).is_none(),
            "spare bit set"
        );
        assert!(Bitfield::from_bytes(&[0x80], 10).is_none(), "too short");
        assert!(Bitfield::from_bytes(&[0, 0, 0], 10).is_none(), "too long");
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xff, 0xc0]);
    }
}
