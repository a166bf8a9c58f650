import type { Command } from 'commander'

// TODO(cli): `edgestar umount` is not implemented yet; its owner replaces this file.
export function register(_program: Command): void {}
