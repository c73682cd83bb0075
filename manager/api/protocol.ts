/**
 * The messages of the manager API, one per frame (frame.ts).
 *
 * Node → manager:
 *   {type: 'call',        id, method, params}   one request, one answer
 *   {type: 'subscribe',   id, method, params}   opens a stream of events
 *   {type: 'unsubscribe', id}                   closes it; nothing answers
 *
 * Manager → node:
 *   {type: 'result',  id, result}               a call's answer
 *   {type: 'started', id}                       a subscription was accepted
 *   {type: 'event',   id, event}                one event of a stream
 *   {type: 'end',     id}                       the manager ended the stream
 *   {type: 'error',   id, error: {code, message}}
 *        id null: about the whole connection, which the manager then closes
 *
 * Ids are chosen by the node, unique among its open calls and streams.
 */
import { z } from 'zod'

const id = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)
const method = z.string().min(1).max(128).regex(/^[A-Za-z0-9._-]+$/, 'must be letters, digits, dots, dashes and underscores')

export const requestSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('call'), id, method, params: z.unknown().optional() }),
  z.strictObject({ type: z.literal('subscribe'), id, method, params: z.unknown().optional() }),
  z.strictObject({ type: z.literal('unsubscribe'), id })
])

export type Request = z.infer<typeof requestSchema>

export const wireErrorSchema = z.strictObject({
  code: z.string().min(1).max(128),
  message: z.string().max(4096)
})

export type WireError = z.infer<typeof wireErrorSchema>

export const responseSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('result'), id, result: z.unknown() }),
  z.strictObject({ type: z.literal('started'), id }),
  z.strictObject({ type: z.literal('event'), id, event: z.unknown() }),
  z.strictObject({ type: z.literal('end'), id }),
  z.strictObject({ type: z.literal('error'), id: id.nullable(), error: wireErrorSchema })
])

export type Response = z.infer<typeof responseSchema>
