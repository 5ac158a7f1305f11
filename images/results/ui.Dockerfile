FROM scratch
COPY results-ui /results-ui
EXPOSE 8080
ENTRYPOINT ["/results-ui"]
