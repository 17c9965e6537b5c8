# Event Master service image, used by docker-compose.yml.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY prisma ./prisma
COPY prisma.config.ts codegen.yml schema.graphql tsconfig.json ./
# Dev dependencies are needed for code generation at install time.
RUN npm ci --include=dev --no-audit --no-fund
COPY src ./src
EXPOSE 4000
USER node
# tsx runs as a loader inside the one process, so SIGTERM reaches the
# service directly and it drains requests before it exits.
CMD ["node", "--import", "tsx", "src/main.ts"]
