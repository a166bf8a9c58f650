import { posix } from 'node:path'
import { EdgestarError } from '../errors.js'
import { ESTARGZ_ERRORS } from './error-codes.js'

/**
 * Cleans a TOC or tar entry name the way the reference reader does
 * (`path.Clean("/"+name)` without the leading `/`): no leading `/` or `./`, no trailing
 * `/`, no `.` components; the root is `''`. Unlike the reference, a name whose `..`
 * components climb above the root is refused instead of being clamped to it, and so is
 * a NUL byte. Throws NAME_ESCAPE naming `what` (for example "entry" or "hardlink target").
 */
export function cleanEntryName(raw: string, what = 'entry'): string {
  if (raw.includes('\0')) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.NAME_ESCAPE,
      `${what} name ${JSON.stringify(raw)} holds a NUL byte`,
      {
        hint: 'the layer is malformed; rebuild it from a clean tree',
      },
    )
  }

  const relative = posix.normalize(`./${raw.replace(/^\/+/, '')}`)
  if (relative === '..' || relative.startsWith('../')) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.NAME_ESCAPE,
      `${what} name ${JSON.stringify(raw)} climbs out of the layer root`,
      { hint: 'the layer is hostile or malformed; do not use it' },
    )
  }
  if (relative === '.' || relative === './') return ''
  return relative.replace(/\/+$/, '')
}
