// Dispatch's end of the evidence file transfer (protocol/file-transfer.ts):
// takes init / segment / fin from every vehicle's .../up/file/ topics, writes
// each segment at its offset into a partial file (fsync'd) and records the
// byte range in SQLite, verifies the whole file's SHA-256 at fin, moves it
// into the evidence folder and records it with its vehicle, alarm, kind and
// geotag, answering the bus with a receipt (down/file) after each step.
// This module is the front the rest of dispatch uses; the parts:
//
//   file-receiver.ts   the MQTT side: topics, segments, receipts, verification
//   evidence-store.ts  the evidence_files / evidence_ranges tables, the partial and final files

export { type FileReceiverEvents, type FileReceiverOptions, type FilesConfig, FilesConfigSchema, FileReceiver } from './file-receiver.ts';
export { DISPATCH_FILES_SCHEMA, EvidenceStore, type StoredFile } from './evidence-store.ts';
