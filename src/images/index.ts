/**
 * The image service: resolve and record images, read their files lazily, pull them
 * whole, and report how much of each is local. Used by the CLI and the agent.
 */
export { type ImageProgress, ImageService, type ImageServiceOptions } from './image-service.js'
export { lookupFile, type MergedFile, normalizePath } from './merged-lookup.js'
