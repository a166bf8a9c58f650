import { EdgestarError } from '../errors.js'

/**
 * Which layers of an image the background fetch takes first. Inside a layer the order is
 * always the prefetch set (files before the landmark), then file order.
 * - `bottom-first`: the image's layer order, base layer first (the default);
 * - `top-first`: the application's own layers first: they change with every release,
 *   while base layers are often already cached from the previous one.
 */
export type BackgroundOrder = 'bottom-first' | 'top-first'

export const BACKGROUND_ORDERS: readonly BackgroundOrder[] = ['bottom-first', 'top-first']

/** `layers` (bottom first, as in the manifest) in the order the background fetches them. */
export function layersInBackgroundOrder(
  layers: readonly string[],
  order: BackgroundOrder,
): string[] {
  return order === 'top-first' ? [...layers].reverse() : [...layers]
}

/** Checks a background order given by `source` (a flag, key or variable name). */
export function parseBackgroundOrder(text: unknown, source: string): BackgroundOrder {
  if (BACKGROUND_ORDERS.includes(text as BackgroundOrder)) return text as BackgroundOrder
  throw new EdgestarError(
    'EDGESTAR_CONFIG_INVALID',
    `${source}: unknown background order ${JSON.stringify(text)}`,
    { hint: `use one of: ${BACKGROUND_ORDERS.join(', ')}` },
  )
}
