/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The dev server proxies the API to a running `qrc serve` (QRC_URL, default the --plain
// loopback listener); the build goes where the service serves it from, at `/`.
const target = process.env.QRC_URL ?? "http://127.0.0.1:8443";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/qrc/api/web_dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": { target, changeOrigin: true, secure: false },
      "/ready": { target, changeOrigin: true, secure: false },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["src/test/setup.ts"],
    css: false,
  },
});
