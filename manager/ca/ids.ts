/**
 * Identifiers in Swarm's shape: 128 random bits written in base 36 and
 * zero-padded to 25 characters (`5pe2p4dlxku6z2a6jnvxc4ve6`). Node ids,
 * cluster ids and join-token secrets all take this form; base 36 keeps them
 * to lowercase letters and digits, safe in a certificate subject, a file name
 * and a shell command alike.
 */
import { randomBytes } from 'node:crypto'

/** Characters of a 128-bit value in base 36: 36^25 > 2^128 > 36^24. */
export const ID_LENGTH = 25

const BASE36 = /^[0-9a-z]+$/

/** A fresh random id (node, cluster or secret). */
export function randomId (): string {
  return toBase36(BigInt(`0x${randomBytes(16).toString('hex')}`), ID_LENGTH)
}

/**
 * Whether `text` may name a node or a cluster in a certificate subject:
 * lowercase letters and digits, 1–64 characters. Generated ids always are;
 * the check keeps hand-picked ones (tests, `--node-id`) from smuggling
 * separators into a distinguished name.
 */
export function isValidId (text: string): boolean {
  return text.length >= 1 && text.length <= 64 && BASE36.test(text)
}

/** `value` in base 36, left-padded with zeros to `width`. */
export function toBase36 (value: bigint, width: number): string {
  return value.toString(36).padStart(width, '0')
}

/** The value of a base-36 string, or undefined if it has other characters. */
export function fromBase36 (text: string): bigint | undefined {
  if (!BASE36.test(text)) return undefined
  let value = 0n
  for (const char of text) value = value * 36n + BigInt(Number.parseInt(char, 36))
  return value
}
