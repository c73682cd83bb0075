/**
 * Plain IPv4 addresses as 32-bit numbers, for checks made once per endpoint
 * of a document: tens of thousands of them at 10,000 services, where
 * ip-address's Address4 (through BigInt) cost a quarter of parsing the whole
 * document, and a regular expression with four captures still 8 %. Accepts
 * exactly what `Address4.isValid` accepts for an address without a prefix
 * (unit-tested against it): four decimal octets up to 255, no leading zeros,
 * nothing around them. Subnets stay with ip-address: a few per document.
 * lb sorts backends and dnsd encodes A records with it too.
 */

/** The address as an unsigned 32-bit number, or null when `text` is not a plain IPv4 address. */
export function parseIpv4 (text: string): number | null {
  let value = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return null
      value = value * 256 + octet
      octet = 0
      digits = 0
      dots++
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && octet === 0) return null // a leading zero
      octet = octet * 10 + c - 0x30
      if (octet > 255) return null
      digits++
    } else {
      return null
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : null
}
