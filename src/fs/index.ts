/**
 * The FUSE view of an image: a read-only merged view of its layers (whiteouts and opaque
 * directories applied), served over /dev/fuse by our own protocol server (`kernel/`), with
 * clean recovery from stale mounts.
 */
export type {
  DirEntry,
  ImageView,
  LayerEntry,
  LayerSource,
  NodeType,
  ViewNode,
  ViewStats,
} from './image-view.js'
export { type LocalLayer, openLocalLayer, openLocalView } from './local-layer.js'
export {
  MergedView,
  type MergedViewOptions,
  OPAQUE_MARKER,
  WHITEOUT_PREFIX,
} from './merged-view.js'
export { checkMountpointExists } from './mount-failure.js'
export {
  FSNAME_PREFIX,
  FULL_READ_AHEAD_KIB,
  LAZY_READ_AHEAD_KIB,
  type Mounted,
  type MountOptions,
  mountImage,
} from './mount-image.js'
export { abortMount, clearStaleMount, type FuseMountInfo, findFuseMounts } from './stale-mount.js'
export { IDS_PER_LAYER, type LayerReadFn, StoreLayer } from './store-layer.js'
export { openStoreView, type StoreViewOptions } from './store-view.js'
export { type ReadFileFn, TocLayer, type TocLikeEntry } from './toc-layer.js'
export { type UnmountResult, type UnmountTimeouts, unmountDir } from './unmount-dir.js'
