// Tests and benchmarks start their broker the same way.
export * from '../../scripts/lib/mosquitto.ts';
