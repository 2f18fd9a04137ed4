// Files in the pages, on the wire exactly as the npm client 7.0.0's file manager has them: an upload is
// `POST /api/file-to-text` (multipart `file`, `includeMetadata`, `storage`, `path` = KEY/CONVERSATION_ID,
// no auth header) answering `{success, text, fileKey, presignedUrl, expiresIn, fileSize, processingTime}`;
// a message carries the file objects in `content.files`; a stale link is re-signed by `/api/presigned-url`.

export const FILE_TO_TEXT_PATH = "/api/file-to-text";
export const PRESIGNED_URL_PATH = "/api/presigned-url";
const REFRESH_WINDOW_S = 300; // as the npm client's getTranscript: re-sign what expires within 5 minutes
const PRESIGN_SECONDS = 7200;

/** The file objects of a `content.files` value in any of the npm client's three forms. */
export function fileList(value) {
  if (Array.isArray(value)) return value.filter((f) => f && typeof f === "object");
  if (value && typeof value === "object") {
    if (value.type === "files" && Array.isArray(value.files)) return fileList(value.files);
    return [value];
  }
  return [];
}

/** The address that downloads a file: the developer's `url`, else the presigned one. */
export function fileUrl(file) {
  return (file && (file.url || (file.storage && file.storage.presignedUrl))) || null;
}

export function fileName(file) {
  const url = fileUrl(file);
  return String((file && file.filename) || (url && url.split(/[/?#]/).filter(Boolean).pop()) || "file");
}

export function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A link that still works: a stored file whose signature expires soon (or whose expiry is unknown) is
 * signed again first. */
export async function freshUrl(file) {
  const storage = file && file.storage;
  const now = Date.now() / 1000;
  if (!storage || !storage.fileKey || (Number.isFinite(storage.expiresIn) && storage.expiresIn - now >= REFRESH_WINDOW_S)) {
    return fileUrl(file);
  }
  const response = await fetch(PRESIGNED_URL_PATH, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ fileKey: storage.fileKey, expiresIn: PRESIGN_SECONDS }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.success) throw new Error(body.error || `HTTP ${response.status}`);
  storage.presignedUrl = body.presignedUrl;
  storage.expiresIn = Math.floor(now) + PRESIGN_SECONDS;
  return body.presignedUrl;
}

/**
 * Upload one file into a conversation; resolves to the file object a message carries.
 * XMLHttpRequest rather than fetch: only it reports upload progress (`onProgress(sent, total)`).
 */
export function uploadFile({ file, apiKey, conversationId, onProgress = () => {} }) {
  const filename = file.name || `attachment_${Date.now()}`;
  const type = file.type || "application/octet-stream";
  const form = new FormData();
  form.append("file", file, filename);
  form.append("includeMetadata", "true");
  form.append("storage", "true");
  form.append("path", `${apiKey}/${conversationId}`);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", FILE_TO_TEXT_PATH);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size));
    xhr.addEventListener("error", () => reject(new Error("the upload did not reach the gateway")));
    xhr.addEventListener("abort", () => reject(new Error("the upload was cancelled")));
    xhr.addEventListener("load", () => {
      const body = xhr.response && typeof xhr.response === "object" ? xhr.response : {};
      if (xhr.status < 200 || xhr.status >= 300 || !body.success) {
        reject(new Error(body.error || `HTTP ${xhr.status}`));
        return;
      }
      onProgress(file.size, file.size);
      resolve({
        filename,
        type,
        textContent: {
          type: "file_content",
          text: body.text || "",
          metadata: { source: "file_attachment", originalFileName: filename, storageType: "direct" },
        },
        storage: {
          fileKey: body.fileKey,
          presignedUrl: body.presignedUrl,
          expiresIn: body.expiresIn,
          fileSize: body.fileSize,
          processingTime: body.processingTime,
        },
      });
    });
    xhr.send(form);
  });
}
