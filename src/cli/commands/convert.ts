import type { Command } from 'commander'

// TODO(cli): `edgestar convert` is not implemented yet; its owner replaces this file.
export function register(_program: Command): void {}
