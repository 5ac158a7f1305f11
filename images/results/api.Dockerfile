FROM scratch
COPY results-api /results-api
EXPOSE 8080
ENTRYPOINT ["/results-api"]
